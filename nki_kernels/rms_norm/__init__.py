"""rms_norm: the NKI kernel and its PyTorch reference (same signature)."""
from nki_kernels.rms_norm.kernel import rms_norm_kernel
from nki_kernels.rms_norm.reference import rms_norm

kernel = rms_norm_kernel
reference = rms_norm

__all__ = ["kernel", "reference", "rms_norm_kernel", "rms_norm"]
