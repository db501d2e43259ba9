"""The simulator-backed kernel table an SDK emulator installs: the NKI kernels, run on the NumPy simulator, behind the
dispatch layer's signatures, each call counted; and the project's PyTorch Llama model run through it."""
import inspect

import pytest
import torch

from appliance.runtime import kernels
from appliance.runtime.model.args import ModelArgs
from appliance.runtime.model.attention import AttentionMetadata, DecodeGroup, PrefillChunk
from appliance.runtime.model.llama import LlamaForCausalLM
from appliance.runtime.model.loader import load_hf_config, load_weights
from appliance.runtime.neuron.kernel_hook import KernelCallCounter, simulated_kernel_table
from tests.nki_kernels.conftest import TOLERANCES


@pytest.fixture(autouse=True)
def restore_references():
    yield
    kernels.use_implementations(None)


def test_the_simulated_table_has_the_dispatch_signatures():
    table = simulated_kernel_table(None, KernelCallCounter())
    assert sorted(table) == sorted(kernels.OPERATIONS)
    for op, impl in table.items():
        assert list(inspect.signature(impl).parameters) == list(inspect.signature(kernels.REFERENCES[op]).parameters)


def test_unknown_operations_are_refused():
    with pytest.raises(ValueError, match="unknown kernel operation 'softmax'"):
        simulated_kernel_table(["softmax"], KernelCallCounter())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_each_operation_matches_its_reference_and_keeps_dtype(dtype):
    torch_dtype = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g).to(torch_dtype)  # noqa: E731
    counter = KernelCallCounter()
    table = simulated_kernel_table(None, counter)
    block_tables = torch.tensor([[2, 0, 0], [1, 3, 0]], dtype=torch.int32)
    context_lens = torch.tensor([3, 6], dtype=torch.int32)
    cases = {
        "rms_norm": (r(5, 32), r(32), 1e-5),
        "rotary_embedding": (r(5, 4, 8), r(5, 2, 8), r(5, 8), r(5, 8)),
        "swiglu_mlp": (r(5, 32), r(48, 32) * 0.2, r(48, 32) * 0.2, r(32, 48) * 0.2),
        "paged_decode_attention": (r(2, 4, 8), r(4, 4, 2, 8), r(4, 4, 2, 8), block_tables, context_lens, 8**-0.5),
    }
    for op, args in cases.items():
        got, want = table[op](*args), kernels.REFERENCES[op](*args)
        as_tuple = lambda t: t if isinstance(t, tuple) else (t,)  # noqa: E731
        for g_out, w_out in zip(as_tuple(got), as_tuple(want)):
            assert g_out.dtype == w_out.dtype and g_out.shape == w_out.shape and g_out.device == w_out.device
            rtol, atol = TOLERANCES[dtype][op]
            torch.testing.assert_close(g_out.float(), w_out.float(), rtol=rtol, atol=atol)
    assert counter == {op: 1 for op in kernels.OPERATIONS}
    assert counter.uncalled(kernels.OPERATIONS) == []


def test_paged_attention_takes_long_index_tensors_as_int32_too():
    q, cache = torch.randn(1, 2, 8), torch.randn(2, 4, 1, 8)
    args = (q, cache, cache, torch.tensor([[1, 0]]), torch.tensor([5]), 0.3)  # int64, as torch defaults
    got = simulated_kernel_table(["paged_decode_attention"])["paged_decode_attention"](*args)
    torch.testing.assert_close(got, kernels.REFERENCES["paged_decode_attention"](*args), rtol=1e-5, atol=1e-5)


def _two_steps(model: LlamaForCausalLM, args: ModelArgs) -> list[torch.Tensor]:
    """Prefill two sequences (6 and 3 tokens; blocks of 4), then decode one token for each; logits of every token."""
    shape = (4, 4, args.num_kv_heads, args.head_dim)
    caches = [(torch.zeros(shape), torch.zeros(shape)) for _ in range(args.num_layers)]
    a, b = [5, 9, 17, 33, 65, 129], [7, 11, 13]
    prefill = AttentionMetadata(
        slot_mapping=torch.tensor([0, 1, 2, 3, 4, 5, 8, 9, 10]), num_decode_tokens=0,
        prefills=[PrefillChunk(0, 6, 6, torch.tensor([0, 1])), PrefillChunk(6, 9, 3, torch.tensor([2]))],
    )
    decode = AttentionMetadata(
        slot_mapping=torch.tensor([6, 11]), num_decode_tokens=2,
        decode_groups=[DecodeGroup(0, 2, torch.tensor([[0, 1], [2, 0]], dtype=torch.int32),
                                   torch.tensor([7, 4], dtype=torch.int32))],
    )
    with torch.inference_mode():
        h1 = model.forward(torch.tensor(a + b), torch.tensor(list(range(6)) + list(range(3))), prefill, caches)
        h2 = model.forward(torch.tensor([3, 4]), torch.tensor([6, 3]), decode, caches)
        return [model.compute_logits(h1), model.compute_logits(h2)]


def test_the_llama_model_runs_every_kernel_on_the_simulator_within_tolerance(tiny_llama):
    args = ModelArgs.from_hf(load_hf_config(tiny_llama))
    model = LlamaForCausalLM(args, load_weights(tiny_llama, torch.float32), 64, "cpu")
    expected = _two_steps(model, args)

    counter = KernelCallCounter()
    kernels.use_implementations(simulated_kernel_table(kernels.OPERATIONS, counter))
    got = _two_steps(model, args)
    kernels.use_implementations(None)

    assert counter.uncalled(kernels.OPERATIONS) == [], counter
    assert counter["paged_decode_attention"] == args.num_layers  # one decode group per layer in the decode step
    # Two layers of float32 kernels: the loosest per-kernel float32 tolerance (swiglu_mlp, nki_kernels/README.md).
    rtol, atol = TOLERANCES["float32"]["swiglu_mlp"]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=rtol, atol=atol)
    assert all(getattr(kernels, op) is kernels.REFERENCES[op] for op in kernels.OPERATIONS)


def test_generation_through_the_engine_with_simulated_kernels_matches_the_references(tiny_llama):
    from appliance.runtime.llm import LLM
    from appliance.runtime.sampling_params import SamplingParams

    llm = LLM(str(tiny_llama), max_model_len=64)
    greedy = SamplingParams(max_tokens=3, temperature=0)
    expected = llm.generate([[1, 2, 3, 4], [5, 6]], greedy)
    counter = KernelCallCounter()
    kernels.use_implementations(simulated_kernel_table(None, counter))
    got = llm.generate([[1, 2, 3, 4], [5, 6]], greedy)
    assert [o.token_ids for o in got] == [o.token_ids for o in expected]
    assert counter.uncalled(kernels.OPERATIONS) == [], counter
