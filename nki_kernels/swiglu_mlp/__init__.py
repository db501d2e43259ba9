"""swiglu_mlp: the NKI kernel and its PyTorch reference (same signature)."""
from nki_kernels.swiglu_mlp.kernel import swiglu_mlp_kernel
from nki_kernels.swiglu_mlp.reference import swiglu_mlp

kernel = swiglu_mlp_kernel
reference = swiglu_mlp

__all__ = ["kernel", "reference", "swiglu_mlp_kernel", "swiglu_mlp"]
