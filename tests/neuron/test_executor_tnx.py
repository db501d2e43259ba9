"""NeuronExecutor over a transformers-neuronx artifact, against SDK TEST DOUBLES (see sdk_doubles/__init__.py)."""
import pytest

from appliance.runtime.executor.interface import StepBatch
from appliance.runtime.neuron.compile import compile_artifact
from appliance.runtime.neuron.executor import NeuronExecutor, neuron_engine
from appliance.runtime.sampling_params import SamplingParams

OPTS = {"backend": "tnx", "tp_degree": 2, "batch_sizes": [2], "max_model_len": 128, "max_context_length": 128,
        "context_buckets": [32, 128], "token_buckets": [128], "block_size": 16}


@pytest.fixture
def artifact(tnx_sdk, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURON_RT_VISIBLE_CORES", "0-1")
    compile_artifact(tiny_llama, OPTS, tmp_path / "t")
    return tmp_path / "t"


def test_load_rebuilds_from_the_checkpoint_and_points_at_the_neffs(tnx_sdk, artifact, tiny_llama):
    NeuronExecutor(artifact)
    assert tnx_sdk.last("LlamaForSampling.from_pretrained")["pretrained_model_path"] == str(tiny_llama.resolve())
    assert tnx_sdk.last("LlamaForSampling.load") == {"directory": str(artifact)}
    assert tnx_sdk.last("LlamaForSampling.to_neuron") == {"from_artifacts": str(artifact), "visible_cores": "0-1"}


def test_mixed_step_calls_forward_with_cache_ids_and_start_ids(tnx_sdk, artifact):
    ex = NeuronExecutor(artifact)
    first = StepBatch()
    first.add([10, 11, 12], 0, [0], True)
    ex.execute(first)
    mixed = StepBatch()
    mixed.add([20, 21], 0, [5], True)  # new sequence -> the next free slot
    mixed.add([13], 3, [0], True)  # the first sequence decodes in slot 0
    logits = ex.execute(mixed)
    assert [int(r.argmax()) for r in logits] == [22, 14]
    calls = tnx_sdk.named("LlamaForSampling.forward")
    assert calls[0]["input_ids"].tolist() == [[10, 11, 12]] and calls[0]["cache_ids"].tolist() == [[0, 1, 2]]
    assert calls[0]["start_ids"].tolist() == [0]
    assert calls[1]["input_ids"].tolist() == [[20, 21]] and calls[1]["start_ids"].tolist() == [1]
    assert calls[2]["input_ids"].tolist() == [[13]] and calls[2]["cache_ids"].tolist() == [[3]]
    assert calls[2]["start_ids"].tolist() == [0]
    later = StepBatch()
    later.add([30, 31], 0, [0], True)  # block 0 reused: its old sequence is gone, its slot is reused
    later.add([22], 2, [5], True)
    ex.execute(later)
    calls = tnx_sdk.named("LlamaForSampling.forward")
    assert calls[3]["start_ids"].tolist() == [0] and calls[4]["start_ids"].tolist() == [1]


def test_chunked_or_cached_prefill_is_refused_for_tnx(tnx_sdk, artifact):
    with pytest.raises(ValueError, match="enable_prefix_caching: must be false"):
        neuron_engine(artifact, enable_prefix_caching=True)
    ex = NeuronExecutor(artifact)
    batch = StepBatch()
    batch.add([1, 2, 3], 0, [4], False)
    ex.execute(batch)
    batch = StepBatch()
    batch.add([4, 5], 3, [4], True)
    with pytest.raises(ValueError, match="prefills whole prompts only"):
        ex.execute(batch)


def test_engine_generates_through_the_tnx_executor(tnx_sdk, artifact):
    engine = neuron_engine(artifact)
    engine.add_request("a", [1, 2, 3], SamplingParams(max_tokens=3, temperature=0, ignore_eos=True))
    engine.add_request("b", [50], SamplingParams(max_tokens=2, temperature=0, ignore_eos=True))
    done = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                done[out.request_id] = out.outputs[0].token_ids
    assert done == {"a": [4, 5, 6], "b": [51, 52]}


def test_loading_needs_every_saved_neff(tnx_sdk, artifact):
    next(artifact.glob("*.neff")).unlink()
    with pytest.raises(FileNotFoundError, match="could not find a matching NEFF"):
        NeuronExecutor(artifact)
