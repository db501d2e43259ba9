"""Contract tests of the transformers-neuronx compile path against SDK TEST DOUBLES (see sdk_doubles/__init__.py)."""
import json

import pytest

from appliance.runtime.neuron.compile import compile_artifact
from appliance.runtime.neuron.tnx_backend import KWARGS_FILE

OPTS = {"backend": "tnx", "tp_degree": 2, "batch_sizes": [4], "max_model_len": 256, "max_context_length": 128,
        "context_buckets": [32, 128], "token_buckets": [64, 256], "dtype": "bfloat16"}


def test_compile_passes_continuous_batching_config_and_saves_neffs(tnx_sdk, tiny_llama, tmp_path):
    out = tmp_path / "t"
    manifest = compile_artifact(tiny_llama, OPTS, out, instance="inf2.xlarge")
    fp = tnx_sdk.last("LlamaForSampling.from_pretrained")
    assert fp["pretrained_model_path"] == str(tiny_llama)
    assert {k: fp[k] for k in ("batch_size", "tp_degree", "amp", "n_positions", "context_length_estimate")} == {
        "batch_size": 4, "tp_degree": 2, "amp": "bf16", "n_positions": [64, 256], "context_length_estimate": [32, 128]}
    assert tnx_sdk.last("ContinuousBatchingConfig") == {"batch_size_for_shared_caches": 4}
    nc = tnx_sdk.last("NeuronConfig")
    assert nc["padding_side"] == "right" and nc["quant"] is None and nc["continuous_batching"] is fp["neuron_config"].continuous_batching
    assert [n for n, _ in tnx_sdk.calls if n.startswith("LlamaForSampling")] == [
        "LlamaForSampling.from_pretrained", "LlamaForSampling.to_neuron", "LlamaForSampling.save"]
    neffs = sorted(p.name for p in out.glob("*.neff"))
    assert len(neffs) == 4 and all(len(n) == len("0123456789abcdef0123.neff") for n in neffs)
    assert json.loads((out / KWARGS_FILE).read_text())["batch_size"] == 4
    assert manifest["sdk"]["neuron_sdk_release"] == "2.26.1" and manifest["family"] == "llama"


def test_int8_maps_to_quantization_config(tnx_sdk, tiny_llama, tmp_path):
    compile_artifact(tiny_llama, {**OPTS, "quantization": "int8"}, tmp_path / "q")
    assert tnx_sdk.last("QuantizationConfig") == {"quant_dtype": "s8", "dequant_dtype": "bf16"}


def test_mistral_uses_mistral_for_sampling(tnx_sdk, checkpoint_factory, tmp_path):
    compile_artifact(checkpoint_factory("mistral"), OPTS, tmp_path / "m")
    assert tnx_sdk.named("MistralForSampling.save")


def test_tnx_rejects_batch_buckets(tnx_sdk, tiny_llama, tmp_path):
    from appliance.runtime.neuron.options import NeuronOptionsError

    with pytest.raises(NeuronOptionsError, match="batch_sizes: .*compiles one batch size"):
        compile_artifact(tiny_llama, {**OPTS, "batch_sizes": [2, 4]}, tmp_path / "x")
