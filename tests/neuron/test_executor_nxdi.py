"""NeuronExecutor over an NxD Inference artifact, against SDK TEST DOUBLES (see sdk_doubles/__init__.py).

Checks the per-step call arguments and core assignment; says nothing about NxD Inference's behaviour on hardware.
"""
import pytest
import torch

from appliance.runtime.executor.interface import StepBatch
from appliance.runtime.neuron.compile import compile_artifact
from appliance.runtime.neuron.executor import NeuronExecutor, neuron_engine
from appliance.runtime.sampling_params import SamplingParams

OPTS = {"tp_degree": 2, "batch_sizes": [4], "max_model_len": 256, "max_context_length": 256,
        "context_buckets": [32, 256], "token_buckets": [64, 256], "block_size": 16}
CORES = {"NEURON_RT_VISIBLE_CORES": "2-3"}


@pytest.fixture
def artifact(nxdi_sdk, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "2-3")
    return compile_artifact(tiny_llama, OPTS, tmp_path / "artifact") and tmp_path / "artifact"


def forward_calls(rec):
    return rec.named("NeuronLlamaForCausalLM.forward")


def test_load_checks_and_uses_the_replica_cores(nxdi_sdk, artifact, monkeypatch):
    NeuronExecutor(artifact)
    assert nxdi_sdk.last("NeuronLlamaForCausalLM.load") == {"compiled_model_path": str(artifact),
                                                            "visible_cores": "2-3"}
    with pytest.raises(ValueError, match="compiled for tp_degree=2 but the replica has 1 cores"):
        NeuronExecutor(artifact, environ={"NEURON_RT_VISIBLE_CORES": "5"})
    monkeypatch.delenv("NEURON_RT_VISIBLE_CORES")
    with pytest.raises(RuntimeError, match="NEURON_RT_VISIBLE_CORES is not set"):
        NeuronExecutor(artifact)


def test_mixed_prefill_and_decode_step_makes_the_documented_calls(nxdi_sdk, artifact):
    ex = NeuronExecutor(artifact)
    assert (ex.num_kv_blocks, ex.block_size, ex.vocab_size) == (4 * 256 // 16, 16, 512)
    prompt_a = list(range(100, 120))  # 20 tokens in blocks 3, 4
    step1 = StepBatch()
    step1.add(prompt_a, 0, [3, 4], True)
    logits = ex.execute(step1)
    assert logits.shape == (1, 512) and int(logits[0].argmax()) == 120

    step2 = StepBatch()
    step2.add([7], 20, [3, 4], True)  # A decodes position 20
    step2.add([200, 201, 202, 203], 16, [3, 7], True)  # B: prefix-cache hit on block 3, then 4 new tokens
    step2.add(list(range(300, 308)), 0, [9], False)  # C: a first prefill chunk (no logits wanted)
    logits = ex.execute(step2)
    assert logits.shape == (2, 512)
    assert [int(r.argmax()) for r in logits] == [8, 204]

    b_call, c_call, a_call = forward_calls(nxdi_sdk)[1:]
    pad = [0] * 12
    assert b_call["input_ids"].tolist() == [prompt_a[:16] + [200, 201, 202, 203] + pad]
    assert b_call["position_ids"].tolist() == [list(range(20)) + pad]
    assert b_call["seq_ids"].tolist() == [0]
    assert b_call["slot_mapping"].tolist() == [[8 * 16 + i for i in range(4)] + [-1] * 252]  # block 7 -> artifact 8
    assert b_call["block_table"].tolist() == [[4, 8] + [0] * 14]
    assert b_call["full_context_lens"].tolist() == [[20]] and b_call["computed_context_lens"].tolist() == [[16]]
    assert b_call["sampling_params"].shape == (1, 3)

    assert c_call["input_ids"].shape == (1, 32) and c_call["computed_context_lens"].tolist() == [[0]]
    assert c_call["slot_mapping"][0, :8].tolist() == [10 * 16 + i for i in range(8)]

    assert a_call["input_ids"].tolist() == [[7]] and a_call["position_ids"].tolist() == [[20]]
    assert a_call["seq_ids"].tolist() == [0]
    assert a_call["slot_mapping"].tolist() == [[5 * 16 + 4]]
    assert a_call["block_table"].tolist() == [[4, 5] + [0] * 14]
    assert a_call["full_context_lens"].tolist() == [[21]] and a_call["computed_context_lens"].tolist() == [[20]]
    assert ex.last_calls == [{"kind": "prefill", "rows": 1, "batch": 1, "length": 32},
                             {"kind": "prefill", "rows": 1, "batch": 1, "length": 32},
                             {"kind": "decode", "rows": 1, "batch": 4, "length": 64}]


def test_a_step_beyond_the_compiled_buckets_is_refused(nxdi_sdk, artifact):
    ex = NeuronExecutor(artifact)
    batch = StepBatch()
    for i in range(5):
        batch.add([1], 3, [i], True)
    with pytest.raises(ValueError, match="batch size 5 exceeds the largest compiled bucket 4"):
        ex.execute(batch)


def test_engine_generates_through_the_executor(nxdi_sdk, artifact):
    engine = neuron_engine(artifact)
    assert engine.max_model_len == 256 and engine.config.block_size == 16
    engine.add_request("r1", [5, 6, 7], SamplingParams(max_tokens=4, temperature=0, ignore_eos=True))
    engine.add_request("r2", [40, 41], SamplingParams(max_tokens=3, temperature=0, ignore_eos=True))
    done = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                done[out.request_id] = out.outputs[0].token_ids
    assert done == {"r1": [8, 9, 10, 11], "r2": [42, 43, 44]}  # the doubles' logits: next = last + 1
    decodes = [c for c in forward_calls(nxdi_sdk) if c["input_ids"].shape[1] == 1]
    assert any(c["input_ids"].shape[0] == 2 for c in decodes)  # both sequences decode in one call


def test_engine_config_the_artifact_cannot_serve_is_an_error(nxdi_sdk, artifact):
    with pytest.raises(ValueError, match="max_num_seqs: 8 exceeds the artifact's batch size 4"):
        neuron_engine(artifact, max_num_seqs=8)
    with pytest.raises(ValueError, match="block_size: the artifact was compiled with block_size=16"):
        neuron_engine(artifact, block_size=32)


def test_on_device_sampling_artifacts_are_refused_by_the_engine(nxdi_sdk, tiny_llama, tmp_path):
    out = tmp_path / "ods"
    compile_artifact(tiny_llama, {**OPTS, "on_device_sampling": True}, out)
    with pytest.raises(ValueError, match="on_device_sampling: this artifact samples on the device"):
        NeuronExecutor(out, environ=CORES)


def test_contiguous_layout_uses_stable_slots_and_refuses_partial_prefills(nxdi_sdk, tiny_llama, tmp_path):
    out = tmp_path / "contig"
    compile_artifact(tiny_llama, {**OPTS, "kv_layout": "contiguous", "batch_sizes": [1, 2, 4]}, out)
    ex = NeuronExecutor(out, environ=CORES)
    first = StepBatch()
    first.add([1, 2, 3], 0, [0], True)
    first.add([4, 5], 0, [16], True)
    ex.execute(first)
    second = StepBatch()
    second.add([6], 2, [16], True)
    second.add([7], 3, [0], True)
    ex.execute(second)
    calls = forward_calls(nxdi_sdk)
    assert [c["seq_ids"].tolist() for c in calls] == [[0], [1], [1, 0]]
    assert calls[0]["slot_mapping"] is None and calls[2]["position_ids"].tolist() == [[2], [3]]
    assert ex.last_calls[-1] == {"kind": "decode", "rows": 2, "batch": 2, "length": 64}
    partial = StepBatch()
    partial.add([8, 9], 3, [0], True)
    with pytest.raises(ValueError, match="contiguous KV layout prefills whole prompts only"):
        ex.execute(partial)


def test_loading_needs_every_file_of_the_layout(nxdi_sdk, artifact):
    (artifact / "weights" / "tp1_sharded_checkpoint.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="tp1_sharded_checkpoint.safetensors"):
        NeuronExecutor(artifact)
