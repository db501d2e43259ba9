"""Which of the project's NKI kernels a compile may put into the NxD Inference graph on Inf2/Trn1.

    resolve_kernels(True, platform="inf2", dtype="bfloat16", block_layout=False)
    -> ("rms_norm", "rotary_embedding", "swiglu_mlp")          # paged attention needs the block KV layout

What the rules rest on (Neuron SDK 2.28, NxD Inference 0.8):

- Inf2 and Trn1 share NeuronCore-v2; NxD's `hardware` enum maps "inf2" and "trn1n" to TRN1 (neuronx_distributed
  utils/utils.py), and NxD Inference 0.8 gates its own kernels on `get_platform_target() == "trn1"`
  (models/llama/modeling_llama.py import_nki_mlp_tkg_kernel, modules/attention/attention_base.py). The kernels here
  are written and simulated against NeuronCore-v2's limits (nki_kernels/simulator/limits.py).
- The kernels are NKI Beta 1 (`neuronxcc.nki`, nki_kernels/_nki.py). NKI 0.3 kernels do not run on Inf2/Trn1: "NxD
  Inference no longer supports NKI kernels on Trn1/Inf2 hardware, as NKI 0.3.0 kernels are not supported on
  Trn1/Inf2" (aws-neuron-sdk release-notes/components/nxd-inference.rst, 2.29). A kernel marked `nki-0.3` is refused.
- paged_decode_attention reads the cache through block tables, in NxD Inference's prefix-caching block layout
  [num_blocks, block_size, kv_heads, head_dim] (modules/kvcache/block_kv_cache_manager.py,
  `_init_kv_shape_for_prefix_caching`); the contiguous layout has no block table, so it needs `block_layout`.
- Dtypes: the kernels compute in float32 and store in the input dtype; they are tested on the simulator in float32
  and bfloat16 (tests/nki_kernels), nothing else.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PLATFORMS = ("inf2", "trn1")
DTYPES = ("float32", "bfloat16")


class KernelNotSupported(ValueError):
    """A requested kernel cannot run with this platform, dtype or KV layout; the message names the kernel and why."""


@dataclass(frozen=True)
class KernelInfo:
    """What one kernel needs: its NKI language ("nki-beta1" = neuronxcc.nki, "nki-0.3" = the nki package of SDK
    2.29+) and whether it reads the KV cache through block tables."""

    name: str
    language: str = "nki-beta1"
    needs_block_layout: bool = False


KERNELS: dict[str, KernelInfo] = {
    "rms_norm": KernelInfo("rms_norm"),
    "rotary_embedding": KernelInfo("rotary_embedding"),
    "swiglu_mlp": KernelInfo("swiglu_mlp"),
    "paged_decode_attention": KernelInfo("paged_decode_attention", needs_block_layout=True),
}


def platform_of(instance_type: str) -> str:
    """"inf2.48xlarge" -> "inf2", "trn1n.32xlarge" -> "trn1"; other families raise KernelNotSupported."""
    family = instance_type.split(".", 1)[0].lower()
    family = {"trn1n": "trn1"}.get(family, family)
    if family not in PLATFORMS:
        raise KernelNotSupported(f"NKI kernels: instance type {instance_type!r} is not Inf2 or Trn1")
    return family


def resolve_kernels(
    requested: bool | Iterable[str] | None, *, platform: str, dtype: str, block_layout: bool
) -> tuple[str, ...]:
    """The kernels to put into the graph, in the order of KERNELS.

    `requested`: True = every kernel that can run here (paged_decode_attention is left out, not refused, when the KV
    layout is contiguous); False/None/empty = none; a list of operation names = exactly those, each checked, so a
    named kernel that cannot run raises. `platform`: "inf2" or "trn1" (see platform_of); `dtype`: the compile dtype
    ("float32", "bfloat16"); `block_layout`: the KV cache uses NxD Inference's block layout (kv_layout="block").
    Raises KernelNotSupported (a ValueError) naming the kernel and the reason.
    """
    if not requested:
        return ()
    if platform not in PLATFORMS:
        raise KernelNotSupported(
            f"NKI kernels: platform {platform!r} is not supported; the kernels target NeuronCore-v2 (inf2, trn1) "
            "with Neuron SDK 2.28"
        )
    if requested is True:
        names = [n for n, info in KERNELS.items() if block_layout or not info.needs_block_layout]
    else:
        names = _checked_names(requested)
    for name in names:
        _check(KERNELS[name], platform=platform, dtype=dtype, block_layout=block_layout)
    return tuple(n for n in KERNELS if n in names)


def _checked_names(requested: Iterable[str]) -> list[str]:
    if isinstance(requested, str):
        requested = [requested]
    names = list(dict.fromkeys(requested))
    for name in names:
        if name not in KERNELS:
            raise KernelNotSupported(f"unknown NKI kernel {name!r}; known: {', '.join(KERNELS)}")
    return names


def _check(info: KernelInfo, *, platform: str, dtype: str, block_layout: bool) -> None:
    if info.language != "nki-beta1":
        raise KernelNotSupported(
            f"NKI kernel {info.name!r} is written for {info.language}; NKI 0.3 kernels do not run on Inf2/Trn1 "
            "(Neuron SDK 2.29 release notes), and the appliance pins SDK 2.28"
        )
    if dtype not in DTYPES:
        raise KernelNotSupported(
            f"NKI kernel {info.name!r} is tested in {' and '.join(DTYPES)} only, not {dtype}"
        )
    if info.needs_block_layout and not block_layout:
        raise KernelNotSupported(
            f"NKI kernel {info.name!r} reads the KV cache through block tables and needs kv_layout='block' "
            "(NxD Inference's block KV layout); the contiguous layout has no block table"
        )
