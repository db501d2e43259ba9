"""Contract tests of the NxD Inference compile path against SDK TEST DOUBLES (see sdk_doubles/__init__.py).

They check what the appliance passes to NxD Inference and the artifact layout; they do not show NxD Inference accepts
it or that anything compiles: nothing here ran on Inferentia.
"""
import json

import pytest

from appliance.runtime.neuron.compile import compile_artifact, load_manifest

OPTS = {"tp_degree": 2, "batch_sizes": [4], "max_model_len": 256, "max_context_length": 128,
        "context_buckets": [32, 128], "token_buckets": [64, 256], "dtype": "bfloat16", "block_size": 16}


def test_compile_passes_the_documented_neuron_config(nxdi_sdk, tiny_llama, tmp_path):
    stages = []
    manifest = compile_artifact(tiny_llama, OPTS, tmp_path / "a", lambda s, p, m: stages.append((s, p)),
                                instance="inf2.xlarge")
    nc = nxdi_sdk.last("NeuronConfig")
    assert nc == {
        "tp_degree": 2, "torch_dtype": "bfloat16", "batch_size": 4, "ctx_batch_size": 1, "tkg_batch_size": 4,
        "max_batch_size": 4, "is_continuous_batching": True, "padding_side": "right", "seq_len": 256,
        "max_context_length": 128, "enable_bucketing": True, "context_encoding_buckets": [32, 128],
        "token_generation_buckets": [64, 256], "save_sharded_checkpoint": True, "is_block_kv_layout": True,
        "is_prefix_caching": True, "pa_block_size": 16, "pa_num_blocks": 4 * 256 // 16 + 1, "prefix_buckets": [32],
    }
    assert nxdi_sdk.last("load_pretrained_config") == {"model_path": str(tiny_llama)}
    init = nxdi_sdk.last("NeuronLlamaForCausalLM.__init__")
    assert init["model_path"] == str(tiny_llama) and init["config"].neuron_config.kwargs == nc
    assert [s for s, _ in stages] == ["validate", "sdk", "compile", "finalize", "done"]
    assert [p for _, p in stages] == sorted(p for _, p in stages)
    assert manifest["backend"] == "nxdi" and manifest["family"] == "llama" and manifest["reused"] is False
    assert manifest["sdk"]["neuron_sdk_release"] == "2.28.1"
    assert manifest["buckets"] == {"batch_sizes": [4], "context_lengths": [32, 128], "token_lengths": [64, 256]}


def test_artifact_layout_is_what_nxd_inference_saves_and_loads(nxdi_sdk, tiny_llama, tmp_path):
    out = tmp_path / "artifact"
    manifest = compile_artifact(tiny_llama, OPTS, out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["artifact.json", "model.pt", "neuron_config.json", "weights/tp0_sharded_checkpoint.safetensors",
                     "weights/tp1_sharded_checkpoint.safetensors"]
    assert set(manifest["files"]) == set(files) - {"artifact.json"}
    assert manifest["size_bytes"] == sum(manifest["files"].values())
    assert load_manifest(out)["key"] == manifest["key"]
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]  # staging directory renamed away


def test_same_key_reuses_the_artifact_and_a_different_one_refuses(nxdi_sdk, tiny_llama, tmp_path):
    out = tmp_path / "a"
    first = compile_artifact(tiny_llama, OPTS, out)
    again = compile_artifact(tiny_llama, OPTS, out)
    assert again["reused"] is True and again["key"] == first["key"]
    assert len(nxdi_sdk.named("NeuronLlamaForCausalLM.compile")) == 1
    with pytest.raises(FileExistsError, match="holds a different artifact"):
        compile_artifact(tiny_llama, {**OPTS, "tp_degree": 1}, out)


def test_int8_and_kernels_map_to_quantized_checkpoint_and_kernel_flags(nxdi_sdk, tiny_llama, tmp_path):
    out = tmp_path / "q"
    compile_artifact(tiny_llama, {**OPTS, "quantization": "int8", "kernels": True}, out)
    nc = nxdi_sdk.last("NeuronConfig")
    assert nc["quantized"] is True and nc["quantization_dtype"] == "int8"
    assert nc["quantization_type"] == "per_channel_symmetric"
    assert nc["fused_qkv"] and nc["qkv_kernel_enabled"] and nc["mlp_kernel_enabled"] and nc["attn_kernel_enabled"]
    quant = nxdi_sdk.last("NeuronLlamaForCausalLM.save_quantized_state_dict")
    assert quant["model_path"] == str(tiny_llama) and quant["path"].endswith("quantized")
    assert (out / "quantized" / "model.safetensors").is_file()


def test_contiguous_layout_uses_batch_buckets_and_on_device_sampling(nxdi_sdk, tiny_llama, tmp_path):
    compile_artifact(tiny_llama, {**OPTS, "kv_layout": "contiguous", "batch_sizes": [1, 2, 4],
                                  "on_device_sampling": True}, tmp_path / "c")
    nc = nxdi_sdk.last("NeuronConfig")
    assert "is_block_kv_layout" not in nc and nc["token_generation_batches"] == [1, 2, 4]
    assert nxdi_sdk.last("OnDeviceSamplingConfig") == {"dynamic": True, "do_sample": True, "top_k": 1,
                                                       "global_topk": 256}


def test_compile_cache_url_is_set_for_the_compile_only(nxdi_sdk, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.delenv("NEURON_COMPILE_CACHE_URL", raising=False)
    compile_artifact(tiny_llama, OPTS, tmp_path / "a", cache_url="s3://bucket/neuron-cache")
    assert nxdi_sdk.last("NeuronLlamaForCausalLM.compile")["compile_cache_url"] == "s3://bucket/neuron-cache"
    import os

    assert "NEURON_COMPILE_CACHE_URL" not in os.environ


def test_invalid_options_fail_before_the_sdk_is_touched(nxdi_sdk, tiny_llama, tmp_path):
    from appliance.runtime.neuron.options import NeuronOptionsError

    with pytest.raises(NeuronOptionsError, match="tp_degree: must be one of .* got 3"):
        compile_artifact(tiny_llama, {**OPTS, "tp_degree": 3}, tmp_path / "x")
    assert nxdi_sdk.calls == [] and not (tmp_path / "x").exists()


def test_a_failing_compile_leaves_no_half_written_artifact(nxdi_sdk, tiny_llama, tmp_path, monkeypatch):
    import sys

    cls = sys.modules["neuronx_distributed_inference.models.llama.modeling_llama"].NeuronLlamaForCausalLM
    original = cls.compile

    def broken(self, path):
        original(self, path)
        raise RuntimeError("neuronx-cc failed")

    monkeypatch.setattr(cls, "compile", broken)
    with pytest.raises(RuntimeError, match="neuronx-cc failed"):
        compile_artifact(tiny_llama, OPTS, tmp_path / "a")
    assert list(tmp_path.iterdir()) == []


def test_qwen2_compiles_with_the_qwen2_model_class(nxdi_sdk, checkpoint_factory, tmp_path):
    manifest = compile_artifact(checkpoint_factory("qwen2"), OPTS, tmp_path / "q")
    assert manifest["family"] == "qwen2" and nxdi_sdk.named("NeuronQwen2ForCausalLM.compile")
    saved = json.loads((tmp_path / "q" / "neuron_config.json").read_text())
    assert saved["neuron_config"]["tp_degree"] == 2


def test_a_compile_jobs_options_dict_is_understood(nxdi_sdk, tiny_llama, tmp_path):
    job = {"target": "neuron", "tp_degree": 2, "batch_buckets": [4], "seq_len_buckets": [64, 256],
           "dtype": "bfloat16", "quantization": "none", "kernels": False}
    out = tmp_path / "staging"
    out.mkdir()  # the lifecycle hands over an empty staging directory
    manifest = compile_artifact(tiny_llama, job, out)
    nc = nxdi_sdk.last("NeuronConfig")
    assert (nc["batch_size"], nc["seq_len"], nc["token_generation_buckets"], nc["context_encoding_buckets"]) == (
        4, 256, [64, 256], [64, 256])
    assert manifest["options"]["quantization"] is None and (out / "model.pt").is_file()


def test_job_option_errors_name_the_jobs_field(nxdi_sdk, tiny_llama, tmp_path):
    from appliance.runtime.neuron.options import NeuronOptionsError

    with pytest.raises(NeuronOptionsError, match=r"^batch_buckets: \[1, 4\]: NxD Inference 0.8 does not support") as e:
        compile_artifact(tiny_llama, {"target": "neuron", "batch_buckets": [1, 4]}, tmp_path / "a")
    assert e.value.field == "batch_buckets"
    with pytest.raises(NeuronOptionsError, match="^seq_len_buckets: 1024 exceeds the model's max_position_embeddings 512"):
        compile_artifact(tiny_llama, {"seq_len_buckets": [128, 1024]}, tmp_path / "b")
    with pytest.raises(NeuronOptionsError, match="^target: this compiler builds target 'neuron', got 'cpu'"):
        compile_artifact(tiny_llama, {"target": "cpu"}, tmp_path / "c")
    manifest = compile_artifact(tiny_llama, {"tp_degree": 1}, tmp_path / "d")
    assert manifest["options"]["max_model_len"] == 512  # min(2048, max_position_embeddings)
