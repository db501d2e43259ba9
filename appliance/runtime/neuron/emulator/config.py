"""EMULATOR (test double) of NxD Inference 0.8's configuration classes: NeuronConfig, OnDeviceSamplingConfig,
InferenceConfig (``neuronx_distributed_inference/models/config.py`` at the Neuron SDK 2.28.0 release).

Only the fields the appliance passes or reads are modelled; every assert and error below mirrors one in the SDK's
``models/config.py`` (line numbers of that file at the 2.28.0 release in the comments), with the same exception type
and message, so a configuration the SDK refuses is refused here too. Leftover keyword arguments only warn, as in the
SDK (l.604).
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIG_FILE = "neuron_config.json"  # models/config.py l.23
TORCH_DTYPES = ("float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2")  # to_torch_dtype, l.46-55


def to_torch_dtype(name: Any) -> str:
    if not isinstance(name, str):
        name = str(name).replace("torch.", "")
    assert name in TORCH_DTYPES, f"Unsupported dtype: {name}"  # l.54
    return name


class OnDeviceSamplingConfig:
    """models/config.py l.1023-1034: no validation, unknown keyword arguments ignored."""

    def __init__(self, **kwargs: Any) -> None:
        self.do_sample = kwargs.pop("do_sample", False)
        self.top_k = kwargs.pop("top_k", 1)
        self.top_p = kwargs.pop("top_p", 1.0)
        self.temperature = kwargs.pop("temperature", 1.0)
        self.dynamic = kwargs.pop("dynamic", False)
        self.deterministic = kwargs.pop("deterministic", False)
        self.global_topk = kwargs.pop("global_topk", 256)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class NeuronConfig:
    """The fields of NxD Inference 0.8's NeuronConfig that the appliance sets, with the SDK's defaults and checks."""

    def __init__(self, **kwargs: Any) -> None:
        self.batch_size = kwargs.pop("batch_size", 1)
        self.padding_side = kwargs.pop("padding_side", "right")
        self.allow_input_truncation = kwargs.pop("allow_input_truncation", False)
        self.seq_len = kwargs.pop("seq_len", 128)
        if "torch_dtype" in kwargs:
            self.torch_dtype = to_torch_dtype(kwargs.pop("torch_dtype"))
        else:
            self.torch_dtype = "bfloat16"  # l.113
        self.max_context_length = kwargs.pop("max_context_length", self.seq_len)
        self.max_length = kwargs.pop("max_length", self.seq_len)
        assert self.max_context_length <= self.max_length, "max_context_length cannot be more than max_length"  # l.139
        self.fused_qkv = kwargs.pop("fused_qkv", False)
        self.ctx_batch_size = kwargs.pop("ctx_batch_size", self.batch_size)
        self.tkg_batch_size = kwargs.pop("tkg_batch_size", self.batch_size)
        self.max_batch_size = kwargs.pop("max_batch_size", self.batch_size)
        self.is_continuous_batching = kwargs.pop("is_continuous_batching", False)
        self.kv_cache_batch_size = kwargs.pop("kv_cache_batch_size", self.batch_size)
        self.apply_seq_ids_mask = kwargs.pop("apply_seq_ids_mask", False)  # padded rows write past max_length
        ods = kwargs.pop("on_device_sampling_config", None)
        self.on_device_sampling_config = OnDeviceSamplingConfig(**ods) if isinstance(ods, dict) else ods  # l.173
        self.output_logits = kwargs.pop("output_logits", False)
        self.enable_bucketing = kwargs.pop("enable_bucketing", False)
        self.context_encoding_buckets = kwargs.pop("context_encoding_buckets", None)
        self.prefix_buckets = kwargs.pop("prefix_buckets", None)  # not sorted or validated by the SDK
        self.token_generation_buckets = kwargs.pop("token_generation_buckets", None)
        if self.context_encoding_buckets is not None:
            self.context_encoding_buckets = sorted(self.context_encoding_buckets)
            assert self.context_encoding_buckets[-1] <= self.max_context_length, (  # l.194
                f"Context bucket {self.context_encoding_buckets[-1]} should be <= {self.max_context_length}")
        if self.token_generation_buckets is not None:
            self.token_generation_buckets = sorted(self.token_generation_buckets)
            assert self.token_generation_buckets[-1] <= self.max_length, (  # l.199
                f"Token generation bucket {self.token_generation_buckets[-1]} should be <= {self.max_length}")
        self.token_generation_batches = kwargs.pop("token_generation_batches", None)
        if self.token_generation_batches is not None:
            if not isinstance(self.token_generation_batches, list):
                self.token_generation_batches = [self.token_generation_batches]
            self.token_generation_batches = sorted(self.token_generation_batches)
            assert self.token_generation_batches[-1] <= self.tkg_batch_size, (  # l.210
                f"Token generation batch buckets {self.token_generation_batches} "
                f"should be <= token generation batch size ({self.tkg_batch_size})")
        self.quantized = kwargs.pop("quantized", False)
        self.quantized_checkpoints_path = kwargs.pop("quantized_checkpoints_path", None)
        if self.quantized is True:
            assert self.quantized_checkpoints_path is not None, "quantized_checkpoints_path is required"  # l.218
        self.quantization_type = kwargs.pop("quantization_type", "per_tensor_symmetric")
        self.quantization_dtype = kwargs.pop("quantization_dtype", "int8")
        self.modules_to_not_convert = kwargs.pop("modules_to_not_convert", None)
        self.is_block_kv_layout = kwargs.pop("is_block_kv_layout", False)
        self.pa_num_blocks = kwargs.pop("pa_num_blocks", self.batch_size)  # l.278: defaults to batch_size
        self.pa_block_size = kwargs.pop("pa_block_size", self.seq_len)  # l.279: defaults to seq_len
        self.is_prefix_caching = kwargs.pop("is_prefix_caching", False)
        self.chunked_prefill_config = kwargs.pop("chunked_prefill_config", None)
        self.is_chunked_prefill = self.chunked_prefill_config is not None
        if self.is_chunked_prefill:
            assert self.is_block_kv_layout, (  # l.307
                "is_block_kv_layout has to be true for chunked prefill because it depends on block KV")
        self.tp_degree = kwargs.pop("tp_degree", 1)
        self.save_sharded_checkpoint = kwargs.pop("save_sharded_checkpoint", False)
        self.attn_kernel_enabled = kwargs.pop("attn_kernel_enabled", None)  # tri-state: None = automatic
        self.qkv_kernel_enabled = kwargs.pop("qkv_kernel_enabled", False)
        self.qkv_nki_kernel_enabled = kwargs.pop("qkv_nki_kernel_enabled", False)
        self.mlp_kernel_enabled = kwargs.pop("mlp_kernel_enabled", False)
        self.attn_tkg_nki_kernel_enabled = kwargs.pop("attn_tkg_nki_kernel_enabled", False)
        self.attn_block_tkg_nki_kernel_enabled = kwargs.pop("attn_block_tkg_nki_kernel_enabled", False)
        if self.attn_block_tkg_nki_kernel_enabled:
            assert self.qkv_kernel_enabled or self.qkv_nki_kernel_enabled, (  # l.449
                "When attn-block-tkg-nki-kernel-enabled, self.qkv_kernel_enabled or self.qkv_nki_kernel_enabled is "
                "also required.")
        assert sum([self.attn_tkg_nki_kernel_enabled, self.attn_block_tkg_nki_kernel_enabled]) <= 1, (  # l.462
            "Multiple token-generation attention kernels enabled. Please enable no more than one of: "
            "[attn-tkg-nki-kernel-enabled, attn-tkg-builtin-kernel-enabled, attn-block-tkg-nki-kernel-enabled]")
        if self.quantized:  # l.518-527 (is_mlp_quantized() is false for every option the appliance sets)
            if self.qkv_kernel_enabled or self.qkv_nki_kernel_enabled:
                assert self.modules_to_not_convert, "Could not find modules_to_not_convert for quantized model."
            elif not self.modules_to_not_convert:
                warnings.warn("modules_to_not_convert is not provided. Assuming all modules will be quantized.",
                              UserWarning)
        # Batch bucketing with block KV or prefix caching: _validate_batch_bucketing_compatibility, l.610-654.
        if self.token_generation_batches is not None:
            features = [text for flag, text in (
                (self.is_chunked_prefill, "chunked prefill (is_chunked_prefill=True)"),
                (self.is_prefix_caching, "prefix caching (is_prefix_caching=True)"),
                (self.is_block_kv_layout, "block KV layout (is_block_kv_layout=True)"),
            ) if flag]
            if features:
                raise ValueError(
                    f"Batch bucketing (token_generation_batches={self.token_generation_batches}) is not currently "
                    f"supported with the following features: {', '.join(features)}. Please disable batch bucketing "
                    "or the incompatible features.")
        # Appliance extension, ignored by the real SDK as any other attribute: the kernels the appliance's own model
        # class puts into the graph (appliance/runtime/neuron/nxdi_llama.py); the emulator runs them on the simulator.
        self.appliance_kernels = list(kwargs.pop("appliance_kernels", []))
        if kwargs:
            log.warning("NeuronConfig init: Unexpected keyword arguments: %s", kwargs)  # l.604

    def to_dict(self) -> dict[str, Any]:
        out = dict(vars(self))
        out.pop("is_chunked_prefill")  # derived from chunked_prefill_config
        if isinstance(self.on_device_sampling_config, OnDeviceSamplingConfig):
            out["on_device_sampling_config"] = self.on_device_sampling_config.to_dict()
        return out


class InferenceConfig:
    """models/config.py l.808-1001: neuron_config, the checkpoint's attributes (load_config), required attributes."""

    REQUIRED = ("hidden_size", "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "vocab_size",
                "max_position_embeddings", "rms_norm_eps")  # LlamaInferenceConfig.get_required_attributes (subset)

    def __init__(self, neuron_config: NeuronConfig, load_config: Any = None, **kwargs: Any) -> None:
        self.neuron_config = neuron_config
        if load_config is not None:
            load_config(self)
        for key, value in kwargs.items():
            setattr(self, key, value)
        missing = [name for name in self.REQUIRED if not hasattr(self, name)]
        assert len(missing) == 0, f"Config must define {missing}"  # validate_config, l.870

    def save(self, model_path: str | Path) -> None:
        """Writes <model_path>/neuron_config.json (InferenceConfig.save, l.886-893)."""
        path = Path(model_path)
        path.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in vars(self).items() if k != "neuron_config"}
        data["neuron_config"] = self.neuron_config.to_dict()
        (path / CONFIG_FILE).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    @classmethod
    def load(cls, model_path: str | Path) -> "InferenceConfig":
        """From <model_path>/neuron_config.json; the NeuronConfig is validated again (from_json_string)."""
        data = json.loads((Path(model_path) / CONFIG_FILE).read_text())
        neuron_config = NeuronConfig(**data.pop("neuron_config"))
        return cls(neuron_config, **data)
