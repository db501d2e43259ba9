"""Linear layers whose weights are prepared once at load for the CPU GEMM library (oneDNN's blocked layout).

``torch.nn.functional.linear`` hands a plain row-major weight to the GEMM on every call, which reorders it into
the blocked layout it computes in, again and again; ``torch.ops.mkldnn._reorder_linear_weight`` does that once, and
``torch.ops.mkldnn._linear_pointwise`` then runs the GEMM with the activation (SiLU) or the elementwise product or
sum with another tensor fused into its output (what vLLM's CPU backend does in ``dnnl_helper.cpp``). Measured on
this project's 2-core AVX-512 machine (docs/engine.md, "Profile"), the packed GEMM is 10-20% faster at 512-2048
rows and up to 2.5x faster for the LM head at 16-64 rows.

With few rows (a decode step's, the LM head's) a linear layer is bound by streaming its weight from memory, and
oneDNN's GEMM reaches only part of that speed: up to ``SMALL_M_MAX`` rows a float32 ``PackedLinear`` runs the CPU
extension's ``panel_linear`` instead (``csrc/linear.cpp``, AVX-512), over a second copy of the weight packed in
32-column panels, 1.4-2x faster than oneDNN there (docs/engine.md, "Linear layers for few rows"). The float32 weight
is then held twice; ``$APPLIANCE_CPU_KERNELS=torch`` turns the extension, and the copy, off.

``make_linear`` returns a ``PackedLinear`` where oneDNN is usable for the dtype and device (checked once per
dtype against ``F.linear``), else a ``DenseLinear`` over ``F.linear`` with the same methods, and logs one line
saying why. ``weight`` gives the plain ``[out, in]`` weight back for code that needs it (the kernel dispatch
layer's installed implementations, the Neuron emulator): a packed layer rebuilds it once, exactly, as the product
with the identity matrix.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

SMALL_M_MAX = 64  # rows up to which panel_linear beats oneDNN on cold weights (benchmarks/linear_rows.py)
_usable: dict[torch.dtype, bool] = {}


def packing_usable(dtype: torch.dtype, device: str | torch.device) -> bool:
    """Whether oneDNN packed linears work for this dtype on this device (CPU only; tried once per dtype)."""
    if torch.device(device).type != "cpu":
        return False
    if dtype not in _usable:
        _usable[dtype] = _try_packing(dtype)
    return _usable[dtype]


def _try_packing(dtype: torch.dtype) -> bool:
    reason = None
    if not torch.backends.mkldnn.is_available():
        reason = "torch was built without oneDNN (mkldnn)"
    else:
        try:
            g = torch.Generator().manual_seed(0)
            w = torch.randn(24, 16, generator=g).to(dtype)
            x = torch.randn(5, 16, generator=g).to(dtype)
            with torch.inference_mode():
                got = PackedLinear(w)(x)
                want = F.linear(x, w)
            if not torch.allclose(got.float(), want.float(), rtol=2e-2, atol=2e-2):
                reason = "its result differs from F.linear"
        except (RuntimeError, AttributeError, NotImplementedError) as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if reason:
        log.warning("linear layers: plain F.linear for %s (oneDNN packed weights unavailable: %s)",
                 str(dtype).removeprefix("torch."), reason)
        return False
    return True


class DenseLinear:
    """y = x @ weight.T (+ bias) through F.linear; the fallback with PackedLinear's methods."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight, self.bias = weight, bias
        self.out_features, self.in_features = weight.shape

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def silu(self, x: torch.Tensor) -> torch.Tensor:
        """silu(x @ weight.T)."""
        return F.silu(F.linear(x, self.weight, self.bias))

    def mul(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """(x @ weight.T) * other."""
        return F.linear(x, self.weight, self.bias) * other

    def add(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """other + x @ weight.T (a residual connection)."""
        return other + F.linear(x, self.weight, self.bias)


class PackedLinear:
    """A linear layer whose weight lives in oneDNN's blocked layout, packed once here.

    In float32 SiLU, the product and the sum are fused into the GEMM's output. In 16-bit dtypes they run as separate
    operations after it, as in Hugging Face's modules: each rounds its result to the dtype, and a fused epilogue,
    which rounds once, would drift from transformers' greedy tokens (the packed GEMM alone gives F.linear's bits).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        if weight.dim() != 2:
            raise ValueError(f"PackedLinear: weight must be [out, in], got {list(weight.shape)}")
        self.out_features, self.in_features = weight.shape
        self.dtype = weight.dtype
        self.fused = weight.dtype == torch.float32
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous())
        self.bias = bias
        self._dense: torch.Tensor | None = None
        self._ext = _panel_ops() if self.fused else None
        self.panels = self._ext.pack_panel_weight(weight) if self._ext is not None else None

    def _few_rows(self, x: torch.Tensor) -> bool:
        return self.panels is not None and x.shape[0] <= SMALL_M_MAX

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._few_rows(x):
            return self._ext.panel_linear(x, self.panels, self.out_features, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")

    def silu(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused or self._few_rows(x):  # few rows: torch's SiLU over the small output, as transformers
            return F.silu(self(x))
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "swish", [], "")

    def mul(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return self(x) * other
        if self._few_rows(x):
            return self._ext.panel_linear(x, self.panels, self.out_features, self.bias, other, 2)
        return torch.ops.mkldnn._linear_pointwise.binary(x.contiguous(), other, self.packed, self.bias, "mul")

    def add(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return other + self(x)
        if self._few_rows(x):
            return self._ext.panel_linear(x, self.panels, self.out_features, self.bias, other, 1)
        return torch.ops.mkldnn._linear_pointwise.binary(x.contiguous(), other, self.packed, self.bias, "add")

    @property
    def weight(self) -> torch.Tensor:
        """The plain [out, in] weight, rebuilt once from the packed one (identity @ W.T is exact)."""
        if self._dense is None:
            eye = torch.eye(self.in_features, dtype=self.dtype)
            self._dense = torch.ops.mkldnn._linear_pointwise(eye, self.packed, None, "none", [], "").t().contiguous()
        return self._dense


Linear = DenseLinear | PackedLinear


def _panel_ops():  # noqa: ANN202 - the extension module, when it has panel_linear for this CPU
    from appliance.runtime import cpu_extension

    ext = cpu_extension.ops()
    return ext if ext is not None and ext.panel_linear_available() else None


def make_linear(weight: torch.Tensor, bias: torch.Tensor | None = None, pack: bool = True) -> Linear:
    """A PackedLinear when ``pack`` and oneDNN can run this weight's dtype on its device, else a DenseLinear."""
    if pack and packing_usable(weight.dtype, weight.device):
        return PackedLinear(weight, bias)
    return DenseLinear(weight, bias)
