import pytest

from appliance.runtime.neuron.model_shape import ModelShape
from appliance.runtime.neuron.options import NeuronCompileOptions, NeuronOptionsError
from tests.neuron.conftest import big_config

SMALL = dict(max_model_len=512, max_context_length=512)


def field_of(excinfo) -> str:
    return excinfo.value.field


def test_valid_options_return_a_memory_estimate(llama_config):
    est = NeuronCompileOptions(**SMALL).validate(llama_config, "inf2.xlarge")
    assert est.fits and 0 < est.weight_bytes_per_core < 10**7 and est.kv_bytes_per_core > 0


def test_tp_degree_must_divide_attention_heads():
    with pytest.raises(NeuronOptionsError, match=r"tp_degree: 8 does not divide num_attention_heads=12; choose one of 1, 2, 4") as e:
        NeuronCompileOptions(tp_degree=8, **SMALL).validate(big_config(num_attention_heads=12, num_key_value_heads=4), "inf2.48xlarge")
    assert field_of(e) == "tp_degree"


def test_tp_degree_must_be_one_the_instance_supports():
    with pytest.raises(NeuronOptionsError, match=r"16 is not a supported tensor-parallel degree on inf2.48xlarge"):
        NeuronCompileOptions(tp_degree=16, **SMALL).validate(big_config(), "inf2.48xlarge")
    with pytest.raises(NeuronOptionsError, match=r"tp_degree: 4 is not a supported .* on inf2.xlarge \(2 NeuronCores\); choose one of 1, 2"):
        NeuronCompileOptions(tp_degree=4, **SMALL).validate(big_config(), "inf2.xlarge")
    with pytest.raises(NeuronOptionsError, match="tp_degree: must be one of"):
        NeuronCompileOptions(tp_degree=3).validate(big_config())


def test_model_that_does_not_fit_names_the_memory_and_the_fixes():
    cfg = big_config(num_attention_heads=48)
    opts = NeuronCompileOptions(tp_degree=8, max_model_len=4096, max_context_length=4096)
    with pytest.raises(NeuronOptionsError, match=r"does not fit at tp_degree=8: weights .* GiB per NeuronCore .*; raise tp_degree \(to 24\), set quantization='int8'") as e:
        opts.validate(cfg, "inf2.48xlarge")
    assert field_of(e) == "tp_degree" and "16 GiB HBM" in str(e.value)
    NeuronCompileOptions(tp_degree=24, max_model_len=4096, max_context_length=4096).validate(cfg, "inf2.48xlarge")
    with pytest.raises(NeuronOptionsError, match="use a larger instance"):
        NeuronCompileOptions(tp_degree=2, **SMALL).validate(cfg, "inf2.xlarge")


def test_int8_quantization_halves_linear_weights():
    cfg = big_config(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32)
    bf16 = NeuronCompileOptions(tp_degree=8, **SMALL).validate(cfg, "inf2.48xlarge")
    int8 = NeuronCompileOptions(tp_degree=8, quantization="int8", **SMALL).validate(cfg, "inf2.48xlarge")
    assert int8.weight_bytes_per_core < 0.75 * bf16.weight_bytes_per_core  # embeddings stay bf16
    assert int8.kv_bytes_per_core == bf16.kv_bytes_per_core


def test_kv_heads_follow_nxd_inference_gqa_sharding():
    shape = ModelShape.from_config(big_config())  # 64 heads, 8 KV heads
    assert shape.kv_heads_per_core(2) == 4  # divides: shard KV heads
    assert shape.kv_heads_per_core(32) == 1  # multiple: REPLICATE_TO_TP_DEGREE
    odd = ModelShape.from_config(big_config(num_attention_heads=24, num_key_value_heads=3))
    assert odd.kv_heads_per_core(24) == 1
    assert ModelShape.from_config(big_config(num_attention_heads=48, num_key_value_heads=32)).kv_heads_per_core(24) == 2  # CONVERT_TO_MHA


def test_block_layout_allows_one_batch_size_only():
    with pytest.raises(NeuronOptionsError, match=r"batch_sizes: \[1, 2, 4\]: NxD Inference 0.8 does not support batch bucketing") as e:
        NeuronCompileOptions(batch_sizes=(1, 2, 4)).validate(big_config())
    assert field_of(e) == "batch_sizes"
    NeuronCompileOptions(batch_sizes=(1, 2, 4), kv_layout="contiguous", tp_degree=32, **SMALL).validate(big_config())


def test_from_dict_rejects_unknown_options_by_name():
    with pytest.raises(NeuronOptionsError, match="tensor_parallel: is not a neuron compile option") as e:
        NeuronCompileOptions.from_dict({"tensor_parallel": 2})
    assert field_of(e) == "tensor_parallel"
    opts = NeuronCompileOptions.from_dict({"tp_degree": 8, "batch_sizes": [4], "quantization": "none"})
    assert opts.tp_degree == 8 and opts.batch_sizes == (4,) and opts.quantization is None
    assert NeuronCompileOptions.from_dict(opts.to_dict()) == opts


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"backend": "vllm"}, "backend"),
        ({"dtype": "int4"}, "dtype"),
        ({"quantization": "fp4"}, "quantization"),
        ({"kv_layout": "paged"}, "kv_layout"),
        ({"max_context_length": 4096, "max_model_len": 2048}, "max_context_length"),
        ({"context_buckets": (128, 512)}, "context_buckets"),
        ({"token_buckets": (128, 0)}, "token_buckets"),
        ({"block_size": 0}, "block_size"),
        ({"num_blocks": 2}, "num_blocks"),
        ({"backend": "tnx"}, "backend"),
        ({"kernels": ["paged_decode_attention"], "kv_layout": "contiguous"}, "kernels"),
        ({"kernels": ["flash_attention"]}, "kernels"),
        ({"context_buckets": (256, 2048)}, "context_buckets"),
    ],
)
def test_bad_options_are_errors_naming_the_option(kwargs, field, llama_config):
    with pytest.raises(NeuronOptionsError) as e:
        NeuronCompileOptions(**kwargs).validate(llama_config)
    assert field_of(e) == field and str(e.value).startswith(f"{field}: ")


def test_architecture_the_backend_cannot_compile_is_an_error(checkpoint_factory):
    import json
    from pathlib import Path

    qwen = json.loads(Path(checkpoint_factory("qwen2"), "config.json").read_text())
    NeuronCompileOptions(**SMALL).validate(qwen)


def test_max_model_len_beyond_the_model_is_an_error(llama_config):
    with pytest.raises(NeuronOptionsError, match="max_model_len: 2048 exceeds the model's max_position_embeddings 512"):
        NeuronCompileOptions().validate(llama_config)


def test_unknown_instance_type_is_an_error(llama_config):
    with pytest.raises(ValueError, match="instance type 'inf3.xlarge' is not supported; choose one of inf2.xlarge"):
        NeuronCompileOptions(**SMALL).validate(llama_config, "inf3.xlarge")
