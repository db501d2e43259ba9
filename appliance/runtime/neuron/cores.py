"""Pin a replica process to its NeuronCores with NEURON_RT_VISIBLE_CORES.

The Neuron runtime reserves every core it can see for the process, and NEURON_RT_VISIBLE_CORES takes one core index
or an inclusive range ("2" or "2-3"), so a replica's cores must be contiguous. A compiled artifact runs on exactly
tp_degree cores.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

VISIBLE_CORES = "NEURON_RT_VISIBLE_CORES"


def format_cores(cores: Iterable[int]) -> str:
    cores = sorted(cores)
    return str(cores[0]) if len(cores) == 1 else f"{cores[0]}-{cores[-1]}"


def parse_cores(value: str) -> list[int]:
    """'3' -> [3]; '2-5' -> [2, 3, 4, 5]; comma lists of those are accepted too."""
    out: list[int] = []
    try:
        for part in value.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise ValueError(f"{VISIBLE_CORES}={value!r} is not a core index or range like '0-1'") from None
    return out


def visible_cores_env(
    cores: Iterable[int], tp_degree: int | None = None, total_cores: int | None = None
) -> dict[str, str]:
    """The environment a replica process needs to own `cores` (validated: contiguous, distinct, on the node)."""
    cores = list(cores)
    if not cores:
        raise ValueError("cores: a neuron replica needs at least one NeuronCore")
    if any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in cores):
        raise ValueError(f"cores: must be non-negative core indices, got {cores}")
    if len(set(cores)) != len(cores):
        raise ValueError(f"cores: {cores} lists a core twice")
    ordered = sorted(cores)
    if ordered != list(range(ordered[0], ordered[0] + len(ordered))):
        raise ValueError(f"cores: {cores} are not contiguous; {VISIBLE_CORES} takes one range of cores")
    if total_cores is not None and ordered[-1] >= total_cores:
        raise ValueError(f"cores: core {ordered[-1]} does not exist on a node with {total_cores} NeuronCores")
    if tp_degree is not None and len(cores) != tp_degree:
        raise ValueError(f"cores: the artifact is compiled for tp_degree={tp_degree} but the replica has "
                         f"{len(cores)} cores ({cores})")
    return {VISIBLE_CORES: format_cores(ordered)}


def check_visible_cores(tp_degree: int, environ: Mapping[str, str] | None = None) -> list[int]:
    """Validate this process's NEURON_RT_VISIBLE_CORES against the artifact's tp_degree; return the cores."""
    environ = os.environ if environ is None else environ
    value = environ.get(VISIBLE_CORES)
    if value is None:
        raise RuntimeError(f"{VISIBLE_CORES} is not set: a neuron replica must be started with its cores "
                           "(the node agent sets it from the replica's cores)")
    cores = parse_cores(value)
    visible_cores_env(cores, tp_degree=tp_degree)
    return cores
