"""NeuronCompileOptions: what a compile job for the neuron target asks for, validated before anything compiles.

Every error a user can cause is a NeuronOptionsError (a ValueError) whose `field` names the option and whose message
says what would be valid.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from appliance.runtime.neuron.buckets import BucketSet, normalize_buckets, power_of_two_buckets
from appliance.runtime.neuron.instances import InstanceType, get_instance
from appliance.runtime.neuron.memory import DTYPE_BYTES, MemoryEstimate, estimate, host_estimate, host_refusals
from appliance.runtime.neuron.model_shape import ModelShape

BACKENDS = ("nxdi",)
KV_LAYOUTS = ("block", "contiguous")
QUANTIZATIONS = (None, "int8")
ALL_TP_DEGREES = (1, 2, 4, 8, 16, 24, 32)
# Prefix caching on a LNC1 NeuronCore (inf2/trn1) is only correct through NxD Inference's flash-attention kernel,
# which it uses for prefill buckets of at least 512 tokens (attention_base.py get_flash_attention_strategy; the
# non-kernel prefix attention does not mask the cached prefix). autobucketing.py's defaults start at 512 too.
MIN_PREFIX_CACHING_BUCKET = 512


class NeuronOptionsError(ValueError):
    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class NeuronCompileOptions:
    """Compile options for the neuron target. Lengths are in tokens; empty bucket lists mean powers of two."""

    backend: str = "nxdi"  # NxD Inference, SDK 2.28 (the only backend; transformers-neuronx was removed)
    tp_degree: int = 2
    batch_sizes: tuple[int, ...] = (8,)  # decode batch buckets; the largest is max_num_seqs
    max_context_length: int = 0  # longest prefill (cached prefix included); 0 = max_model_len
    max_model_len: int = 2048  # prompt + completion
    context_buckets: tuple[int, ...] = ()  # prefill lengths; () = powers of two up to max_context_length
    token_buckets: tuple[int, ...] = ()  # decode KV lengths; () = powers of two up to max_model_len
    dtype: str = "bfloat16"
    quantization: str | None = None  # None | "int8" (weights only)
    kernels: bool | tuple[str, ...] = False  # the appliance's NKI kernels: True (all that apply) or operation names
    kv_layout: str = ""  # "block" (paged, the default) | "contiguous" (a cache line per sequence); "" = default
    block_size: int = 32  # KV block size (NxD Inference pa_block_size)
    num_blocks: int = 0  # KV blocks; 0 = enough for every sequence at max_model_len
    on_device_sampling: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # passed through to the backend's config

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NeuronCompileOptions":
        """From a compile job's options JSON; unknown keys are an error naming the key."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise NeuronOptionsError(unknown[0], f"is not a neuron compile option (known: {', '.join(sorted(names))})")
        kwargs = dict(data)
        for key in ("batch_sizes", "context_buckets", "token_buckets"):
            if key in kwargs:
                value = kwargs[key]
                if isinstance(value, int):
                    value = [value]
                if not isinstance(value, (list, tuple)):
                    raise NeuronOptionsError(key, f"must be a list of integers, got {value!r}")
                kwargs[key] = tuple(value)
        if isinstance(kwargs.get("kernels"), list):
            kwargs["kernels"] = tuple(kwargs["kernels"])
        if kwargs.get("quantization") in ("", "none"):
            kwargs["quantization"] = None
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("batch_sizes", "context_buckets", "token_buckets"):
            out[key] = list(out[key])
        if isinstance(out["kernels"], tuple):
            out["kernels"] = list(out["kernels"])
        return out

    @property
    def context_length(self) -> int:
        """The longest prefill: max_context_length, or max_model_len when that is 0."""
        return self.max_context_length or self.max_model_len

    @property
    def max_batch(self) -> int:
        return max(self.batch_sizes)

    @property
    def kernel_ops(self) -> tuple[str, ...]:
        """The appliance NKI kernels this artifact puts into the compiled graph (validated by validate())."""
        from appliance.runtime.neuron.kernel_support import KernelNotSupported, resolve_kernels

        if not self.kernels:
            return ()
        ops = resolve_kernels(self.kernels, platform="inf2", dtype=self.dtype, block_layout=self.block_layout)
        if self.quantization and "swiglu_mlp" in ops:  # the kernel multiplies the float weights NxD quantizes
            if self.kernels is not True:
                raise KernelNotSupported("NKI kernel 'swiglu_mlp' reads float MLP weights; with quantization='int8' "
                                         "NxD Inference's quantized linear layers hold them instead")
            ops = tuple(op for op in ops if op != "swiglu_mlp")
        return ops

    @property
    def buckets(self) -> BucketSet:
        limit = self.context_length
        smallest = MIN_PREFIX_CACHING_BUCKET if self.block_layout else 128
        ctx = self.context_buckets or power_of_two_buckets(limit, min(smallest, limit))
        tok = self.token_buckets or power_of_two_buckets(self.max_model_len, min(128, self.max_model_len))
        return BucketSet.build(self.batch_sizes, ctx, tok)

    @property
    def resolved_num_blocks(self) -> int:
        """KV blocks (NxD Inference's pa_num_blocks; it adds one reserved block of its own for writes of slot -1)."""
        return self.num_blocks or self.max_batch * -(-self.max_model_len // self.block_size)

    @property
    def layout(self) -> str:
        return self.kv_layout or "block"

    @property
    def block_layout(self) -> bool:
        return self.layout == "block"

    def kv_tokens(self) -> int:
        if self.block_layout:
            return self.resolved_num_blocks * self.block_size
        return self.max_batch * self.max_model_len

    def validate(
        self, model_config: Mapping[str, Any] | Any, instance: str | InstanceType | None = None,
        check_host: bool = True,
    ) -> MemoryEstimate:
        """Check the options against a model config (config.json) and an instance type; return the memory estimate.

        With an instance, the host memory to compile is checked too (plan.py reports it with the load's)."""
        self._validate_alone()
        shape = ModelShape.from_config(model_config)
        try:
            family = shape.family(self.backend)
        except ValueError as exc:
            raise NeuronOptionsError("backend", str(exc)) from None
        if self.kernels and family != "llama":
            raise NeuronOptionsError("kernels", f"the appliance's NKI kernels are wired into its Llama-family model "
                                     f"class (Llama, Mistral), not {shape.architecture}; compile without kernels")
        window = shape.sliding_window
        if shape.architecture == "MistralForCausalLM" and window and window < self.max_model_len:
            raise NeuronOptionsError(
                "max_model_len", f"{self.max_model_len} exceeds the model's sliding_window {shape.sliding_window}, "
                "which the llama model class does not implement; use max_model_len <= sliding_window")
        if shape.max_position_embeddings and self.max_model_len > shape.max_position_embeddings:
            raise NeuronOptionsError(
                "max_model_len", f"{self.max_model_len} exceeds the model's max_position_embeddings "
                f"{shape.max_position_embeddings}")
        inst = get_instance(instance) if instance is not None else None
        valid_tp = inst.tp_degrees if inst else ALL_TP_DEGREES
        if self.tp_degree not in valid_tp:
            where = f"on {inst.name} ({inst.cores} NeuronCores)" if inst else "on inf2/trn1"
            raise NeuronOptionsError("tp_degree", f"{self.tp_degree} is not a supported tensor-parallel degree "
                                     f"{where}; choose one of {', '.join(map(str, valid_tp))}")
        if shape.num_heads % self.tp_degree:
            ok = [tp for tp in valid_tp if shape.num_heads % tp == 0]
            raise NeuronOptionsError("tp_degree", f"{self.tp_degree} does not divide num_attention_heads="
                                     f"{shape.num_heads}; choose one of {', '.join(map(str, ok))}")
        mem = estimate(shape, self.tp_degree, self.dtype, self.quantization == "int8", self.kv_tokens())
        if not mem.fits:
            bigger = [tp for tp in valid_tp if tp > self.tp_degree and shape.num_heads % tp == 0]
            hint = f"raise tp_degree (to {', '.join(map(str, bigger))})" if bigger else "use a larger instance"
            raise NeuronOptionsError(
                "tp_degree", f"the model does not fit at tp_degree={self.tp_degree}: {mem.describe()}; {hint}, set "
                "quantization='int8', or lower max_model_len, batch_sizes or num_blocks")
        if inst is not None and check_host:
            host = host_estimate(shape, mem, self.dtype, self.quantization == "int8", inst)
            if refusals := host_refusals(host, inst, self.tp_degree):
                raise NeuronOptionsError("instance", " ".join(f"{reason}; {fix}." for reason, fix in refusals))
        return mem

    def _validate_alone(self) -> None:
        if self.backend == "tnx":
            raise NeuronOptionsError("backend", "the transformers-neuronx backend was removed (retired after Neuron SDK "
                                     "2.26; see docs/neuron.md); use 'nxdi'")
        if self.backend not in BACKENDS:
            raise NeuronOptionsError("backend", f"must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not isinstance(self.tp_degree, int) or self.tp_degree not in ALL_TP_DEGREES:
            raise NeuronOptionsError("tp_degree", f"must be one of {', '.join(map(str, ALL_TP_DEGREES))}, "
                                     f"got {self.tp_degree!r}")
        if self.kv_layout and self.kv_layout not in KV_LAYOUTS:
            raise NeuronOptionsError("kv_layout", f"must be one of {', '.join(KV_LAYOUTS)}, got {self.kv_layout!r}")
        if self.dtype not in DTYPE_BYTES:
            raise NeuronOptionsError("dtype", f"must be one of {', '.join(DTYPE_BYTES)}, got {self.dtype!r}")
        if self.quantization not in QUANTIZATIONS:
            raise NeuronOptionsError("quantization", f"must be 'int8' or none, got {self.quantization!r}")
        if not isinstance(self.max_context_length, int) or self.max_context_length < 0:
            raise NeuronOptionsError("max_context_length", f"must be 0 (= max_model_len) or a positive integer, "
                                     f"got {self.max_context_length!r}")
        for name in ("max_model_len", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise NeuronOptionsError(name, f"must be a positive integer, got {value!r}")
        if self.max_context_length > self.max_model_len:
            raise NeuronOptionsError("max_context_length", f"{self.max_context_length} exceeds max_model_len "
                                     f"{self.max_model_len}")
        if not isinstance(self.num_blocks, int) or self.num_blocks < 0:
            raise NeuronOptionsError("num_blocks", f"must be 0 (automatic) or a positive integer, "
                                     f"got {self.num_blocks!r}")
        for name in ("batch_sizes", "context_buckets", "token_buckets"):
            value = getattr(self, name)
            if name != "batch_sizes" and not value:
                continue
            try:
                normalize_buckets(name, value)
            except ValueError as exc:
                raise NeuronOptionsError(name, str(exc).split(" ", 1)[1]) from None
        if self.block_layout:
            small = [b for b in self.buckets.context_lengths if b < MIN_PREFIX_CACHING_BUCKET or b % self.block_size]
            if small:
                raise NeuronOptionsError(
                    "context_buckets", f"{small}: with kv_layout='block' every context bucket must be a multiple of "
                    f"block_size ({self.block_size}) and at least {MIN_PREFIX_CACHING_BUCKET} (NxD Inference 0.8 "
                    "masks a cached prefix only in its flash-attention kernel, which needs 512-token prefill buckets "
                    "on inf2/trn1); raise max_context_length or use kv_layout='contiguous'")
        if self.kernels:
            from appliance.runtime.neuron.kernel_support import KernelNotSupported

            try:
                self.kernel_ops
            except KernelNotSupported as exc:
                raise NeuronOptionsError("kernels", str(exc)) from None
        if self.context_buckets and max(self.context_buckets) != self.context_length:
            raise NeuronOptionsError("context_buckets", f"the largest bucket must equal max_context_length "
                                     f"{self.context_length}, got {max(self.context_buckets)}")
        if self.token_buckets and max(self.token_buckets) != self.max_model_len:
            raise NeuronOptionsError("token_buckets", f"the largest bucket must equal max_model_len "
                                     f"{self.max_model_len}, got {max(self.token_buckets)}")
        if self.num_blocks and self.num_blocks * self.block_size < self.max_model_len:
            raise NeuronOptionsError("num_blocks", f"{self.num_blocks} blocks of {self.block_size} tokens cannot "
                                     f"hold one sequence of max_model_len {self.max_model_len}")
        if len(set(self.batch_sizes)) > 1 and self.layout != "contiguous":
            why = ("NxD Inference 0.8 does not support batch bucketing (token_generation_batches) with the block KV "
                   "layout; give one batch size or set kv_layout='contiguous'")
            raise NeuronOptionsError("batch_sizes", f"{list(self.batch_sizes)}: {why}")
