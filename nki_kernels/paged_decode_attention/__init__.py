"""paged_decode_attention: the NKI kernel and its PyTorch reference (same signature)."""
from nki_kernels.paged_decode_attention.kernel import paged_decode_attention_kernel
from nki_kernels.paged_decode_attention.reference import paged_decode_attention

kernel = paged_decode_attention_kernel
reference = paged_decode_attention

__all__ = ["kernel", "reference", "paged_decode_attention_kernel", "paged_decode_attention"]
