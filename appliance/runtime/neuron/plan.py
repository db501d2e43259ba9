"""A plan before compiling: what a neuron compile of a model on an instance type will build, need and cost.

    make_plan(config, instance="inf2.xlarge", options={"max_model_len": 4096}) -> NeuronPlan

For a model (its config.json), an instance type and compile options (NeuronCompileOptions' keys; all optional) the
plan says: the tensor-parallel degree (when not given, the smallest valid one that fits), the buckets, the KV blocks,
device memory per NeuronCore, host memory to compile and to load (memory.py), how many graphs neuronx-cc will compile
and an estimate of how long that takes, and the `problems` that refuse it (each with its reason and its fix).

Graph count, following NxD Inference 0.8 `modules/autobucketing.py` over the NeuronConfig the nxdi backend passes
(`nxdi_backend.neuron_config_kwargs`): context encoding compiles one graph per context bucket, and with the block KV
layout (prefix caching) one per (context bucket, prefix length) pair where the prefix lengths are 0 plus
`prefix_buckets` (`generate_2d_buckets_for_prefix_caching_from_config`); token generation compiles one graph per
token bucket, times the batch buckets when batch bucketing is on (`generate_2d_buckets_for_batch_bucketing`).
transformers-neuronx compiles one graph per context_length_estimate and one per n_positions bucket.

The compile time is an estimate, never a measurement: COMPILE_SECONDS per graph for a Llama-3-8B-sized model
(32 layers x hidden 4096), scaled linearly by layers x hidden size. The real time depends on neuronx-cc, the bucket
lengths and the host's CPUs.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.runtime.neuron.buckets import BucketSet
from appliance.runtime.neuron.instances import TP_DEGREES, InstanceType, get_instance
from appliance.runtime.neuron.memory import (
    HostMemoryEstimate, MemoryEstimate, estimate, host_estimate, host_refusals,
)
from appliance.runtime.neuron.model_shape import ModelShape
from appliance.runtime.neuron.options import NeuronCompileOptions, NeuronOptionsError

DEFAULT_MAX_MODEL_LEN = 2048
COMPILE_SECONDS = {"context_encoding": 90.0, "token_generation": 60.0}  # per graph, Llama-3-8B-sized (estimate)
REFERENCE_SIZE = 32 * 4096  # layers x hidden size of the model COMPILE_SECONDS describes


def default_max_model_len(max_position_embeddings: int) -> int:
    """What a compile uses when no length is given: min(2048, max_position_embeddings)."""
    return min(DEFAULT_MAX_MODEL_LEN, max_position_embeddings or DEFAULT_MAX_MODEL_LEN)


@dataclass(frozen=True)
class Problem:
    """Why the plan refuses, and what to change."""

    what: str  # "host memory", or the compile option at fault
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}: {self.reason}. Fix: {self.fix}"


@dataclass(frozen=True)
class GraphCount:
    context_encoding: int
    token_generation: int

    @property
    def total(self) -> int:
        return self.context_encoding + self.token_generation


@dataclass(frozen=True)
class NeuronPlan:
    model: str
    instance: InstanceType | None
    options: NeuronCompileOptions
    tp_chosen: str  # why the plan chose tp_degree; "" when the options gave it
    prefix_buckets: tuple[int, ...]
    graphs: GraphCount
    compile_seconds_estimate: float
    device: MemoryEstimate
    host: HostMemoryEstimate
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def fits(self) -> bool:
        return not self.problems

    @property
    def tp_degree(self) -> int:
        return self.options.tp_degree

    @property
    def buckets(self) -> BucketSet:
        return self.options.buckets

    @property
    def kv_blocks(self) -> int:
        """KV blocks of the artifact (block layout; NxD Inference adds one reserved block), 0 for the contiguous layout."""
        return self.options.resolved_num_blocks if self.options.block_layout else 0

    @property
    def reason(self) -> str:
        """All problems in one line (empty when the plan fits)."""
        return " ".join(str(p) for p in self.problems)

    def describe(self) -> str:
        return describe(self)

    def to_dict(self) -> dict[str, Any]:
        b, o, h, d = self.options.buckets, self.options, self.host, self.device
        return {
            "model": self.model,
            "instance": self.instance.name if self.instance else None,
            "fits": self.fits,
            "tp_degree": o.tp_degree,
            "tp_chosen": self.tp_chosen or None,
            "options": o.to_dict(),
            "buckets": {"context": list(b.context_lengths), "token": list(b.token_lengths),
                        "prefix": list(self.prefix_buckets), "batch": list(b.batch_sizes)},
            "kv_blocks": self.kv_blocks,
            "device_memory_per_core": {"weights_bytes": d.weight_bytes_per_core, "kv_bytes": d.kv_bytes_per_core,
                                       "usable_bytes": d.usable_bytes_per_core, "fits": d.fits},
            "host_memory": {"compile_bytes": h.compile_bytes, "load_bytes": h.load_bytes,
                            "usable_bytes": h.usable_bytes, "compile_fits": h.compile_fits,
                            "load_fits": h.load_fits},
            "graphs": {"context_encoding": self.graphs.context_encoding,
                       "token_generation": self.graphs.token_generation, "total": self.graphs.total},
            "compile_seconds_estimate": round(self.compile_seconds_estimate),
            "problems": [{"what": p.what, "reason": p.reason, "fix": p.fix} for p in self.problems],
            "notes": list(self.notes),
        }


def make_plan(
    config: Mapping[str, Any],
    instance: str | InstanceType | None = None,
    options: Mapping[str, Any] | NeuronCompileOptions | None = None,
    *,
    model: str = "",
    checkpoint_bytes: int | None = None,
) -> NeuronPlan:
    """Plan a neuron compile. Malformed options raise NeuronOptionsError; what will not fit is in `problems`."""
    shape = ModelShape.from_config(config)
    inst = get_instance(instance) if instance is not None else None
    opts, tp_given = _options(options, shape)
    notes: list[str] = []
    chosen = ""
    if not tp_given:
        tp, chosen = _smallest_tp(shape, opts, inst, checkpoint_bytes)
        opts = replace(opts, tp_degree=tp)
    problems: list[Problem] = []
    try:
        opts.validate(config, inst, check_host=False)
    except NeuronOptionsError as exc:
        problems.append(_problem(exc))
    device = _device(shape, opts)
    host = host_estimate(shape, device, opts.dtype, opts.quantization == "int8", inst, checkpoint_bytes)
    if inst is None:
        notes.append("no instance type: host memory and the instance's tensor-parallel degrees were not checked")
    else:
        problems += [Problem("host memory", reason, fix) for reason, fix in host_refusals(host, inst, opts.tp_degree)]
    graphs, prefix = count_graphs(opts)
    return NeuronPlan(
        model=model or str(config.get("_name_or_path") or shape.architecture), instance=inst, options=opts,
        tp_chosen=chosen, prefix_buckets=prefix, graphs=graphs,
        compile_seconds_estimate=compile_seconds(shape, graphs), device=device, host=host,
        problems=tuple(problems), notes=tuple(notes),
    )


def _options(options: Mapping[str, Any] | NeuronCompileOptions | None, shape: ModelShape
             ) -> tuple[NeuronCompileOptions, bool]:
    if isinstance(options, NeuronCompileOptions):
        options._validate_alone()
        return options, True
    data = dict(options or {})
    if "max_model_len" not in data:
        tokens = data.get("token_buckets")
        data["max_model_len"] = (max(tokens) if isinstance(tokens, (list, tuple)) and tokens
                                 else default_max_model_len(shape.max_position_embeddings))
    opts = NeuronCompileOptions.from_dict(data)
    opts._validate_alone()
    return opts, "tp_degree" in data


def _device(shape: ModelShape, opts: NeuronCompileOptions) -> MemoryEstimate:
    return estimate(shape, opts.tp_degree, opts.dtype, opts.quantization == "int8", opts.kv_tokens())


def _smallest_tp(shape: ModelShape, opts: NeuronCompileOptions, inst: InstanceType | None,
                 checkpoint_bytes: int | None) -> tuple[int, str]:
    """(tp_degree, why): the smallest valid degree whose device and host memory fit; else the smallest whose device
    memory fits; else the largest valid one (which validation then refuses with the memory it needs)."""
    valid = inst.tp_degrees if inst else TP_DEGREES["inf2"]
    candidates = [tp for tp in valid if shape.num_heads % tp == 0] or [1]
    device_fits = []
    for tp in candidates:
        trial = replace(opts, tp_degree=tp)
        device = _device(shape, trial)
        if not device.fits:
            continue
        host = host_estimate(shape, device, trial.dtype, trial.quantization == "int8", inst, checkpoint_bytes)
        if host.compile_fits and host.load_fits:
            return tp, "the smallest valid degree that fits"
        device_fits.append(tp)
    if device_fits:
        return device_fits[0], "the smallest valid degree whose device memory fits; host memory does not fit at any"
    return candidates[-1], "the largest valid degree; device memory does not fit at any"


def _problem(exc: NeuronOptionsError) -> Problem:
    message = str(exc).split(": ", 1)[1] if ": " in str(exc) else str(exc)
    reason, _, fix = message.rpartition("; ")
    return Problem(exc.field, reason or fix, fix if reason else f"change {exc.field}")


def count_graphs(opts: NeuronCompileOptions) -> tuple[GraphCount, tuple[int, ...]]:
    """(graphs neuronx-cc compiles, prefix buckets) for these options; see the module docstring."""
    if opts.backend != "nxdi":
        b = opts.buckets
        return GraphCount(len(b.context_lengths), len(b.token_lengths)), ()
    from appliance.runtime.neuron.nxdi_backend import neuron_config_kwargs

    kw = neuron_config_kwargs(opts)
    context, tokens = kw["context_encoding_buckets"], kw["token_generation_buckets"]
    if kw.get("is_prefix_caching"):
        prefix = tuple(kw.get("prefix_buckets") or ())
        return GraphCount(len(context) * (1 + len(prefix)), len(tokens)), prefix
    batches = set(kw.get("token_generation_batches") or ()) | {kw["tkg_batch_size"]}
    return GraphCount(len(context), len(tokens) * len(batches)), ()


def compile_seconds(shape: ModelShape, graphs: GraphCount) -> float:
    """An estimate of the compile's duration (see the module docstring), never a measurement."""
    scale = shape.num_layers * shape.hidden_size / REFERENCE_SIZE
    return scale * (graphs.context_encoding * COMPILE_SECONDS["context_encoding"]
                    + graphs.token_generation * COMPILE_SECONDS["token_generation"])


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    return f"{minutes} min" if minutes < 90 else f"{seconds / 3600:.1f} h"


def _list(values: tuple[int, ...] | list[int]) -> str:
    return ", ".join(map(str, values)) or "-"


def describe(plan: NeuronPlan) -> str:
    """The plan as a few readable lines."""
    o, b, g, inst = plan.options, plan.options.buckets, plan.graphs, plan.instance
    where = (f"{inst.name} ({inst.cores} NeuronCores, {inst.host_memory_gib} GiB host memory)" if inst
             else "an unspecified instance")
    verdict = "fits" if plan.fits else "REFUSED"
    chosen = f" (chosen: {plan.tp_chosen})" if plan.tp_chosen else " (given)"
    if o.block_layout:
        kv = f"block layout, {plan.kv_blocks} blocks of {o.block_size} tokens (+1 the SDK reserves)"
        prefix = f" x {len(plan.prefix_buckets) + 1} prefix lengths (0, {_list(plan.prefix_buckets)})"
    else:
        kv = f"contiguous, {o.max_batch} cache lines of {o.max_model_len} tokens"
        prefix = ""
    lines = [
        f"Neuron plan for {plan.model} on {where}: {verdict}",
        f"  backend          {o.backend}, {o.dtype}, quantization {o.quantization or 'none'}, "
        f"kernels {'on' if o.kernels else 'off'}",
        f"  tp_degree        {o.tp_degree}{chosen}",
        f"  lengths          max_model_len {o.max_model_len}, longest prefill {o.context_length}",
        f"  buckets          context {_list(b.context_lengths)}; token {_list(b.token_lengths)}; "
        f"prefix {_list(plan.prefix_buckets)}; batch {_list(b.batch_sizes)}",
        f"  KV cache         {kv}",
        f"  device memory    {plan.device.describe()}{'' if plan.device.fits else '  TOO MUCH'}",
        f"  host memory      {plan.host.describe()}"
        + ("" if plan.host.compile_fits and plan.host.load_fits else "  TOO MUCH"),
        f"  graphs           {g.total}: {g.context_encoding} context-encoding "
        f"({len(b.context_lengths)} lengths{prefix}) + {g.token_generation} token-generation",
        f"  compile time     about {_duration(plan.compile_seconds_estimate)} "
        "(an estimate from the graph count and the model's size, not a measurement)",
    ]
    lines += [f"  note             {n}" for n in plan.notes]
    if plan.problems:
        lines.append("Problems:")
        for p in plan.problems:
            lines += [f"  - {p.what}: {p.reason}", f"    fix: {p.fix}"]
    return "\n".join(lines)
