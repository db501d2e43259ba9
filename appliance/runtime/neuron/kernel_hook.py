"""The NKI kernels behind the engine's kernel dispatch layer, for the SDK emulator.

On Neuron the kernels run inside NxD Inference's compiled graph (appliance/runtime/neuron/nxdi_llama.py), not through
the host's dispatch layer (`appliance.runtime.kernels`): the engine only samples on the host there. For the SDK
emulator, `simulated_kernel_table` gives the same operations backed by the NKI kernels running on the
simulator (`nki_kernels.simulate`): torch tensors in and out, the kernel in between, each call counted, so a test
can check that an artifact compiled with kernels really ran them. It is slow (NumPy, per tile): tiny models only.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
import torch

from appliance.runtime import kernels


class KernelCallCounter(Counter):
    """Calls per operation made through a simulated kernel table ({op: count})."""

    def uncalled(self, ops: Iterable[str]) -> list[str]:
        """The operations of `ops` never called."""
        return [op for op in ops if self[op] == 0]


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)  # same bits, no rounding
    return t.numpy()


def _to_torch(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    if a.dtype.name == "bfloat16":
        t = torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    else:
        t = torch.from_numpy(np.ascontiguousarray(a))
    return t.to(device=like.device, dtype=like.dtype)


def _int32(t: torch.Tensor, what: str) -> np.ndarray:
    if t.dtype.is_floating_point:
        raise TypeError(f"paged_decode_attention: {what} must be an integer tensor, got {t.dtype}")
    return _to_numpy(t.to(torch.int32))


def _simulated_ops() -> dict[str, Callable[..., Callable]]:
    import nki_kernels
    from nki_kernels import simulate

    def rms_norm(counter: Counter) -> Callable:
        def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
            counter["rms_norm"] += 1
            rows = x.reshape(-1, x.shape[-1])
            out = simulate(nki_kernels.rms_norm.kernel, _to_numpy(rows), _to_numpy(weight.to(x.dtype)), float(eps))
            return _to_torch(out, x).view(x.shape)
        return rms_norm

    def rotary_embedding(counter: Counter) -> Callable:
        def rotary_embedding(
            q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            counter["rotary_embedding"] += 1
            q_out, k_out = simulate(
                nki_kernels.rotary_embedding.kernel, _to_numpy(q), _to_numpy(k), _to_numpy(cos), _to_numpy(sin)
            )
            return _to_torch(q_out, q), _to_torch(k_out, k)
        return rotary_embedding

    def swiglu_mlp(counter: Counter) -> Callable:
        def swiglu_mlp(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
            counter["swiglu_mlp"] += 1
            rows = x.reshape(-1, x.shape[-1])
            out = simulate(
                nki_kernels.swiglu_mlp.kernel, _to_numpy(rows), _to_numpy(w_gate), _to_numpy(w_up), _to_numpy(w_down)
            )
            return _to_torch(out, x).view(x.shape)
        return swiglu_mlp

    def paged_decode_attention(counter: Counter) -> Callable:
        def paged_decode_attention(
            q: torch.Tensor,
            k_cache: torch.Tensor,
            v_cache: torch.Tensor,
            block_tables: torch.Tensor,
            context_lens: torch.Tensor,
            scale: float,
        ) -> torch.Tensor:
            counter["paged_decode_attention"] += 1
            out = simulate(
                nki_kernels.paged_decode_attention.kernel, _to_numpy(q), _to_numpy(k_cache), _to_numpy(v_cache),
                _int32(block_tables, "block_tables"), _int32(context_lens, "context_lens"), float(scale),
            )
            return _to_torch(out, q)
        return paged_decode_attention

    return {"rms_norm": rms_norm, "rotary_embedding": rotary_embedding, "swiglu_mlp": swiglu_mlp,
            "paged_decode_attention": paged_decode_attention}


def simulated_kernel_table(
    ops: Iterable[str] | None = None, counter: Counter | None = None
) -> dict[str, Callable]:
    """{operation: callable with the dispatch layer's signature} running the NKI kernels on the simulator.

    `ops`: the operations to route (None = all of kernels.OPERATIONS); `counter`: a KernelCallCounter (or any
    Counter) that each call increments under its operation's name. Install it with
    `kernels.use_implementations(simulated_kernel_table(ops, counter))`; `kernels.use_implementations(None)`
    restores the references. Tensors are converted to NumPy (bfloat16 bit-exact), the kernel runs on
    `nki_kernels.simulate`, and the outputs come back with the input's dtype and device. paged_decode_attention
    takes block_tables [B, M] and context_lens [B] as integer tensors and hands them to the kernel as int32.
    """
    ops = list(kernels.OPERATIONS if ops is None else ops)
    unknown = sorted(set(ops) - set(kernels.OPERATIONS))
    if unknown:
        raise ValueError(f"unknown kernel operation {unknown[0]!r}; known: {', '.join(kernels.OPERATIONS)}")
    counter = KernelCallCounter() if counter is None else counter
    makers = _simulated_ops()
    return {op: makers[op](counter) for op in ops}
