"""rotary_embedding: the NKI kernel and its PyTorch reference (same signature)."""
from nki_kernels.rotary_embedding.kernel import rotary_embedding_kernel
from nki_kernels.rotary_embedding.reference import rotary_embedding

kernel = rotary_embedding_kernel
reference = rotary_embedding

__all__ = ["kernel", "reference", "rotary_embedding_kernel", "rotary_embedding"]
