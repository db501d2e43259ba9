"""The NxD Inference compile path, run through the SDK EMULATOR (a labelled test double of NxD Inference 0.8).

The emulator applies the SDK's own configuration checks and writes its artifact layout, so these tests show what the
appliance configures and that NxD Inference 0.8's validation (as read from its source) accepts it. They do not show
that neuronx-cc compiles anything: nothing here ran on Inferentia.
"""
import json
import os

import pytest

from appliance.runtime.neuron.compile import compile_artifact, load_manifest
from appliance.runtime.neuron.emulator import LABEL
from appliance.runtime.neuron.emulator.application import describe
from appliance.runtime.neuron.nxdi_backend import neuron_config_kwargs
from appliance.runtime.neuron.options import NeuronCompileOptions, NeuronOptionsError
from tests.neuron.conftest import saved_neuron_config

OPTS = {"tp_degree": 2, "batch_sizes": [4], "max_model_len": 2048, "max_context_length": 1024,
        "token_buckets": [256, 2048], "dtype": "bfloat16", "block_size": 32}


def test_compile_passes_the_documented_neuron_config(emulator, long_llama, tmp_path):
    stages = []
    manifest = compile_artifact(long_llama, OPTS, tmp_path / "a", lambda s, p, m: stages.append((s, p)),
                                instance="inf2.xlarge")
    nc = saved_neuron_config(tmp_path / "a")
    expected = {
        "tp_degree": 2, "torch_dtype": "bfloat16", "batch_size": 4, "ctx_batch_size": 1, "tkg_batch_size": 4,
        "max_batch_size": 4, "is_continuous_batching": True, "padding_side": "right", "seq_len": 2048,
        "max_context_length": 1024, "enable_bucketing": True, "context_encoding_buckets": [512, 1024],
        "prefix_buckets": [512, 1024], "token_generation_buckets": [256, 2048], "save_sharded_checkpoint": True,
        "is_block_kv_layout": True, "is_prefix_caching": True, "pa_block_size": 32, "pa_num_blocks": 4 * 2048 // 32,
        "attn_kernel_enabled": True,
    }
    assert {k: nc[k] for k in expected} == expected
    assert [s for s, _ in stages] == ["validate", "sdk", "compile", "finalize", "done"]
    assert manifest["backend"] == "nxdi" and manifest["family"] == "llama" and manifest["reused"] is False
    assert manifest["sdk"]["emulator"] == LABEL and "(emulated)" in manifest["sdk"]["neuronx-distributed-inference"]
    assert manifest["buckets"] == {"batch_sizes": [4], "context_lengths": [512, 1024], "token_lengths": [256, 2048]}
    graphs = describe(tmp_path / "a")["graphs"]  # one graph per [prefill, prefix] bucket, prefix 0 included
    assert graphs["context_encoding_model"] == [[512, 0], [512, 512], [512, 1024], [1024, 0], [1024, 512],
                                                [1024, 1024]]


def test_prefix_buckets_reach_the_longest_context(emulator, long_llama):
    """A 1,500-token cached prefix at max_model_len 2048: the old prefix_buckets (context buckets less the largest)
    hit NxD Inference's "Prefix len ... exceeds largest bucket" assert (model_wrapper.py l.1038)."""
    from appliance.runtime.neuron.emulator import buckets as bk
    from appliance.runtime.neuron.emulator.config import NeuronConfig

    o = NeuronCompileOptions(tp_degree=1, batch_sizes=(4,), max_model_len=2048, dtype="float32")
    nc = NeuronConfig(**neuron_config_kwargs(o))
    assert bk.prefix_caching_cte_bucket(bk.cte_buckets(nc), 100, 1500) == (512, 2048)
    nc.prefix_buckets = list(o.buckets.context_lengths[:-1])  # what the backend used to pass
    with pytest.raises(AssertionError, match="Prefix len 1088 exceeds largest bucket 1024"):
        bk.prefix_caching_cte_bucket(bk.cte_buckets(nc), 100, 1500)


def test_artifact_layout_is_what_nxd_inference_saves_and_loads(emulator, long_llama, tmp_path):
    out = tmp_path / "artifact"
    manifest = compile_artifact(long_llama, OPTS, out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    neffs = [f"neffs/context_encoding_model/bk{i}.neff" for i in range(6)] + [
        f"neffs/token_generation_model/bk{i}.neff" for i in range(2)]
    assert files == sorted(["artifact.json", "model.pt", "neuron_config.json",
                            "weights/tp0_sharded_checkpoint.safetensors", "weights/tp1_sharded_checkpoint.safetensors",
                            *neffs])
    assert set(manifest["files"]) == set(files) - {"artifact.json"}
    assert manifest["size_bytes"] == sum(manifest["files"].values())
    assert load_manifest(out)["key"] == manifest["key"]
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]  # staging and compiler work directories gone


def test_same_key_reuses_the_artifact_and_a_different_one_refuses(emulator, long_llama, tmp_path):
    out = tmp_path / "a"
    first = compile_artifact(long_llama, OPTS, out)
    stamp = (out / "model.pt").stat().st_mtime_ns
    again = compile_artifact(long_llama, OPTS, out)
    assert again["reused"] is True and again["key"] == first["key"] and (out / "model.pt").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="holds a different artifact"):
        compile_artifact(long_llama, {**OPTS, "tp_degree": 1}, out)


def test_int8_with_kernels_compiles_without_nxd_inference_qkv_kernel(emulator, long_llama, tmp_path):
    """The old mapping turned NxD Inference's QKV kernel on with int8, which its NeuronConfig refuses without
    modules_to_not_convert (models/config.py l.518); the appliance's kernels live in its own model class instead."""
    from appliance.runtime.neuron.emulator.config import NeuronConfig

    with pytest.raises(AssertionError, match="Could not find modules_to_not_convert for quantized model"):
        NeuronConfig(quantized=True, quantized_checkpoints_path="/q", fused_qkv=True, qkv_kernel_enabled=True)
    out = tmp_path / "q"
    compile_artifact(long_llama, {**OPTS, "quantization": "int8", "kernels": ["rms_norm", "rotary_embedding"]}, out)
    nc = saved_neuron_config(out)
    assert nc["quantized"] is True and nc["quantization_type"] == "per_channel_symmetric"
    assert nc["qkv_kernel_enabled"] is False and nc["appliance_kernels"] == ["rms_norm", "rotary_embedding"]
    assert (out / "quantized").is_dir()


def test_kernels_true_enables_what_the_layout_allows(emulator, long_llama, tmp_path):
    compile_artifact(long_llama, {**OPTS, "kernels": True}, tmp_path / "b")
    assert saved_neuron_config(tmp_path / "b")["appliance_kernels"] == [
        "rms_norm", "rotary_embedding", "swiglu_mlp", "paged_decode_attention"]
    with pytest.raises(NeuronOptionsError, match="kernels: NKI kernel 'paged_decode_attention' .* needs "
                                                 "kv_layout='block'"):
        compile_artifact(long_llama, {**OPTS, "kv_layout": "contiguous", "kernels": ["paged_decode_attention"]},
                         tmp_path / "c")


def test_contiguous_layout_uses_batch_buckets_and_masks_padded_rows(emulator, long_llama, tmp_path):
    compile_artifact(long_llama, {**OPTS, "kv_layout": "contiguous", "batch_sizes": [1, 2, 4],
                                  "on_device_sampling": True}, tmp_path / "c")
    nc = saved_neuron_config(tmp_path / "c")
    assert nc["is_block_kv_layout"] is False and nc["token_generation_batches"] == [1, 2, 4]
    assert nc["apply_seq_ids_mask"] is True
    assert nc["on_device_sampling_config"]["global_topk"] == 256


def test_sdk_refuses_batch_bucketing_with_the_block_layout(emulator):
    from appliance.runtime.neuron.emulator.config import NeuronConfig

    with pytest.raises(ValueError, match=r"Batch bucketing \(token_generation_batches=\[1, 4\]\) is not currently "
                                         r"supported with the following features: prefix caching"):
        NeuronConfig(batch_size=4, tkg_batch_size=4, token_generation_batches=[1, 4], is_block_kv_layout=True,
                     is_prefix_caching=True)


def test_compile_cache_url_is_set_for_the_compile_only(emulator, long_llama, tmp_path, monkeypatch):
    from appliance.runtime.neuron.emulator.application import NeuronBaseForCausalLM

    seen = []
    original = NeuronBaseForCausalLM.compile
    monkeypatch.setattr(NeuronBaseForCausalLM, "compile",
                        lambda self, path: (seen.append(os.environ.get("NEURON_COMPILE_CACHE_URL")),
                                            original(self, path)))
    monkeypatch.delenv("NEURON_COMPILE_CACHE_URL", raising=False)
    compile_artifact(long_llama, OPTS, tmp_path / "a", cache_url="s3://bucket/neuron-cache")
    assert seen == ["s3://bucket/neuron-cache"] and "NEURON_COMPILE_CACHE_URL" not in os.environ


def test_invalid_options_fail_before_anything_is_written(emulator, long_llama, tmp_path):
    with pytest.raises(NeuronOptionsError, match="tp_degree: must be one of .* got 3"):
        compile_artifact(long_llama, {**OPTS, "tp_degree": 3}, tmp_path / "x")
    with pytest.raises(NeuronOptionsError, match=r"context_buckets: \[128\]: with kv_layout='block'"):
        compile_artifact(long_llama, {**OPTS, "context_buckets": [128, 1024]}, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_a_failing_compile_leaves_no_half_written_artifact(emulator, long_llama, tmp_path, monkeypatch):
    from appliance.runtime.neuron.emulator.application import NeuronBaseForCausalLM

    original = NeuronBaseForCausalLM.compile

    def broken(self, path):
        original(self, path)
        raise RuntimeError("neuronx-cc failed")

    monkeypatch.setattr(NeuronBaseForCausalLM, "compile", broken)
    with pytest.raises(RuntimeError, match="neuronx-cc failed"):
        compile_artifact(long_llama, OPTS, tmp_path / "a")
    assert list(tmp_path.iterdir()) == []


def test_qwen2_compiles_with_the_qwen2_model_class(emulator, checkpoint_factory, tmp_path):
    manifest = compile_artifact(checkpoint_factory("qwen2", max_position_embeddings=2048), OPTS, tmp_path / "q")
    assert manifest["family"] == "qwen2" and describe(tmp_path / "q")["family"] == "qwen2"
    saved = json.loads((tmp_path / "q" / "neuron_config.json").read_text())
    assert saved["neuron_config"]["tp_degree"] == 2 and saved["model_type"] == "qwen2"


def test_a_compile_jobs_options_dict_is_understood(emulator, long_llama, tmp_path):
    job = {"target": "neuron", "tp_degree": 2, "batch_buckets": [4], "seq_len_buckets": [512, 1024],
           "dtype": "bfloat16", "quantization": "none", "kernels": False}
    out = tmp_path / "staging"
    out.mkdir()  # the lifecycle hands over an empty staging directory
    manifest = compile_artifact(long_llama, job, out)
    nc = saved_neuron_config(out)
    assert (nc["batch_size"], nc["seq_len"], nc["token_generation_buckets"], nc["context_encoding_buckets"]) == (
        4, 1024, [512, 1024], [512, 1024])
    assert manifest["options"]["quantization"] is None and (out / "model.pt").is_file()


def test_job_option_errors_name_the_jobs_field(emulator, tiny_llama, tmp_path):
    with pytest.raises(NeuronOptionsError, match=r"^batch_buckets: \[1, 4\]: NxD Inference 0.8 does not support") as e:
        compile_artifact(tiny_llama, {"target": "neuron", "batch_buckets": [1, 4]}, tmp_path / "a")
    assert e.value.field == "batch_buckets"
    with pytest.raises(NeuronOptionsError, match="^seq_len_buckets: 1024 exceeds the model's max_position_embeddings 512"):
        compile_artifact(tiny_llama, {"seq_len_buckets": [512, 1024]}, tmp_path / "b")
    with pytest.raises(NeuronOptionsError, match="^target: this compiler builds target 'neuron', got 'cpu'"):
        compile_artifact(tiny_llama, {"target": "cpu"}, tmp_path / "c")
    manifest = compile_artifact(tiny_llama, {"tp_degree": 1, "kv_layout": "contiguous"}, tmp_path / "d")
    assert manifest["options"]["max_model_len"] == 512  # min(2048, max_position_embeddings)


def test_the_sdk_refuses_a_tp_degree_its_parallel_layers_cannot_split(emulator, long_llama, tmp_path):
    """NxD Inference pads attention heads to a multiple of tp_degree (gqa.py), but NxD's ColumnParallelLinear asserts
    the MLP splits evenly; the appliance's own validation refuses both before the SDK sees them."""
    from appliance.runtime.neuron.emulator.application import NeuronLlamaForCausalLM
    from appliance.runtime.neuron.emulator.config import InferenceConfig, NeuronConfig
    from appliance.runtime.neuron.emulator.hf_adapter import load_pretrained_config

    config = InferenceConfig(NeuronConfig(tp_degree=24), load_config=load_pretrained_config(str(long_llama)))
    with pytest.raises(AssertionError, match="128 is not divisible by 24"):
        NeuronLlamaForCausalLM(str(long_llama), config).compile(str(tmp_path / "a"))
    with pytest.raises(NeuronOptionsError, match="tp_degree: 8 does not divide num_attention_heads=4"):
        compile_artifact(long_llama, {**OPTS, "tp_degree": 8}, tmp_path / "b")
