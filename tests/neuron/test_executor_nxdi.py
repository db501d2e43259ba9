"""The engine on a Neuron artifact, through the SDK EMULATOR (a labelled test double of NxD Inference 0.8).

Greedy tokens are compared with transformers on the same random weights, so a call the appliance builds wrongly for
NxD Inference's static shapes, padding or KV-cache rules (as the emulator mirrors them from the SDK's source) shows
up as different tokens or as the SDK's own error. Nothing here ran on Inferentia.
"""
import random

import pytest
import torch

from appliance.runtime.executor.interface import StepBatch
from appliance.runtime.neuron.compile import compile_artifact
from appliance.runtime.neuron.executor import NeuronExecutor, neuron_engine
from appliance.runtime.sampling_params import SamplingParams
from tests.runtime.conftest import hf_greedy

CORES = {"NEURON_RT_VISIBLE_CORES": "2-3"}
BLOCK = {"tp_degree": 2, "batch_sizes": [4], "max_model_len": 2048, "dtype": "float32", "block_size": 32}
CONTIGUOUS = {**BLOCK, "kv_layout": "contiguous", "max_model_len": 512, "context_buckets": [64, 512],
              "token_buckets": [128, 512]}
GREEDY = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)


def compiled(model, options, path):
    compile_artifact(model, options, path)
    return path


@pytest.fixture
def block_artifact(emulator, long_llama, tmp_path):
    return compiled(long_llama, BLOCK, tmp_path / "block")


def prompts(n: int, length: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(4, 500) for _ in range(length)] for _ in range(n)]


def run(engine, requests: list[list[int]], arrive_every: int = 0) -> list[list[int]]:
    """Add requests (one every `arrive_every` steps, or all at once) and step to the end; token ids per request."""
    pending = list(enumerate(requests))
    outs: dict[str, list[int]] = {}
    steps = 0
    while pending or engine.has_unfinished_requests():
        if pending and (arrive_every == 0 or steps % arrive_every == 0):
            batch = pending if arrive_every == 0 else pending[:1]
            for i, ids in batch:
                engine.add_request(str(i), ids, GREEDY)
            pending = pending[len(batch):]
        for out in engine.step():
            if out.finished:
                outs[out.request_id] = list(out.token_ids)
        steps += 1
    return [outs[str(i)] for i in range(len(requests))]


def test_load_checks_the_replica_cores(block_artifact):
    assert NeuronExecutor(block_artifact, environ=CORES).cores == [2, 3]
    with pytest.raises(ValueError, match=r"tp_degree=2 but the replica has 1 cores \(\[2\]\)"):
        NeuronExecutor(block_artifact, environ={"NEURON_RT_VISIBLE_CORES": "2"})


def test_block_layout_mixed_steps_are_exact(block_artifact, long_llama):
    """Staggered arrivals: prefills and decodes share steps; the emulator's SDK rules decide every call."""
    requests = prompts(4, 40, seed=1)
    engine = neuron_engine(block_artifact, environ=CORES)
    assert run(engine, requests, arrive_every=2) == hf_greedy(long_llama, requests, 8)
    kinds = {c["kind"] for c in engine.executor.last_calls}
    assert kinds <= {"prefill", "decode"}
    assert engine.stats().kv_blocks_used == 0


def test_a_1500_token_cached_prefix_and_chunked_prefill_are_exact(block_artifact, long_llama):
    """A 1,500-token shared prefix (prefix-cache hit) and a 1,700-token prompt prefilled in 256-token chunks,
    past the second-largest context bucket (1024) at max_model_len 2048."""
    shared = prompts(1, 1500, seed=2)[0]
    requests = [shared + [7, 8, 9], shared + [10, 11], prompts(1, 1700, seed=3)[0]]
    engine = neuron_engine(block_artifact, environ=CORES, max_num_batched_tokens=256)
    first = run(engine, requests[:1])
    rest = run(engine, requests[1:])
    assert first + rest == hf_greedy(long_llama, requests, 8)
    assert engine.stats().prefix_cache_hit_tokens >= 1472  # the shared prefix's whole 32-token blocks


def test_contiguous_layout_with_partial_batches_is_exact(emulator, long_llama, tmp_path):
    """Partial decode batches are padded by the SDK with the unused seq ids; apply_seq_ids_mask keeps those rows off
    live cache lines. Without it (the old configuration) a sequence prefilled in the same step is overwritten."""
    # a short first prompt decodes at positions the later, longer prompts already hold; the 1-token prompt would
    # otherwise get the logits of a padding row (the SDK pads position ids with 1 and reads the largest position)
    requests = prompts(1, 5, seed=4) + prompts(3, 30, seed=5) + [[42]]
    expected = hf_greedy(long_llama, requests, 8)
    fixed = neuron_engine(compiled(long_llama, CONTIGUOUS, tmp_path / "c"), environ=CORES)
    assert run(fixed, requests, arrive_every=3) == expected
    unmasked = {**CONTIGUOUS, "extra": {"apply_seq_ids_mask": False}}
    broken = neuron_engine(compiled(long_llama, unmasked, tmp_path / "u"), environ=CORES)
    assert run(broken, requests, arrive_every=3) != expected


def test_kernels_run_inside_the_emulated_graph_within_tolerance(emulator, long_llama, tmp_path):
    """With kernels on, the emulated graph calls each enabled NKI kernel (on the NumPy simulator), and the logits
    stay within the kernels' documented float32 tolerance of the reference path."""
    batch = StepBatch()
    batch.add(list(range(5, 45)), 0, [0, 1], True)
    plain = NeuronExecutor(compiled(long_llama, BLOCK, tmp_path / "plain"), environ=CORES)
    reference = plain.execute(batch)
    decode = StepBatch()
    decode.add([int(reference[0].argmax())], 40, [0, 1], True)
    reference_decode = plain.execute(decode)

    with_kernels = NeuronExecutor(compiled(long_llama, {**BLOCK, "kernels": True}, tmp_path / "k"), environ=CORES)
    calls = with_kernels.backend.model.kernel_calls
    got = with_kernels.execute(batch)
    got_decode = with_kernels.execute(decode)
    assert calls.uncalled(with_kernels.nki_operations) == []
    assert set(with_kernels.nki_operations) == {"rms_norm", "rotary_embedding", "swiglu_mlp", "paged_decode_attention"}
    torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_decode, reference_decode, rtol=1e-4, atol=1e-4)


def test_a_step_beyond_the_compiled_buckets_is_refused(block_artifact):
    ex = NeuronExecutor(block_artifact, environ=CORES)
    batch = StepBatch()
    for i in range(5):  # the artifact's batch is 4
        batch.add([1], 10, [i], True)
    with pytest.raises(ValueError, match="batch size 5 exceeds the largest compiled bucket 4"):
        ex.execute(batch)


def test_engine_config_the_artifact_cannot_serve_is_an_error(block_artifact):
    with pytest.raises(ValueError, match="max_num_seqs: 8 exceeds the artifact's batch size 4"):
        neuron_engine(block_artifact, environ=CORES, max_num_seqs=8)
    with pytest.raises(ValueError, match="block_size: the artifact was compiled with block_size=32"):
        neuron_engine(block_artifact, environ=CORES, block_size=16)


def test_on_device_sampling_artifacts_are_refused_by_the_engine(emulator, long_llama, tmp_path):
    path = compiled(long_llama, {**BLOCK, "on_device_sampling": True}, tmp_path / "ods")
    with pytest.raises(ValueError, match="on_device_sampling: this artifact samples on the device"):
        NeuronExecutor(path, environ=CORES)


def test_loading_needs_every_file_of_the_layout(block_artifact):
    (block_artifact / "weights" / "tp1_sharded_checkpoint.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="tp1_sharded_checkpoint"):
        NeuronExecutor(block_artifact, environ=CORES)


def test_block_layout_budget_is_a_context_bucket_and_a_decode_runs_every_step_of_a_long_prefill(block_artifact,
                                                                                                 long_llama):
    engine = neuron_engine(block_artifact, environ=CORES)
    budget = engine.config.step_token_budget
    assert budget in engine.executor.buckets.context_lengths and budget <= 512
    short, long = prompts(1, 20, seed=6)[0], prompts(1, 1400, seed=7)[0]
    engine.add_request("short", short, GREEDY)
    engine.step()
    engine.add_request("long", long, GREEDY)
    outs: dict[str, list[int]] = {}
    prefill_steps = 0
    while engine.has_unfinished_requests():
        step_outputs = engine.step()
        calls = engine.executor.last_calls
        if any(c["kind"] == "prefill" for c in calls) and "short" not in outs:
            prefill_steps += 1
            assert any(c["kind"] == "decode" for c in calls), "the running decode waited behind a prefill chunk"
        for out in step_outputs:
            if out.finished:
                outs[out.request_id] = list(out.token_ids)
    assert prefill_steps >= 3  # 1,400 tokens in chunks of at most the budget
    assert [outs["short"], outs["long"]] == hf_greedy(long_llama, [short, long], 8)
