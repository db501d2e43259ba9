"""The kernel dispatch layer: the model code's hot operations go through appliance.runtime.kernels, whose
implementations can be swapped (the SDK emulator swaps in the NKI kernels on the simulator)."""
import inspect

import pytest

import nki_kernels
from appliance.runtime import kernels


@pytest.fixture(autouse=True)
def restore_references():
    yield
    kernels.use_implementations(None)


def test_nki_kernels_have_the_dispatch_signatures():
    for op in kernels.OPERATIONS:
        ref = inspect.signature(kernels.REFERENCES[op]).parameters
        assert list(inspect.signature(getattr(nki_kernels, op).reference).parameters) == list(ref)


def test_unknown_operations_are_refused_by_the_dispatch_layer():
    with pytest.raises(ValueError, match="unknown kernel operation 'softmax'"):
        kernels.use_implementations({"softmax": print})


def test_model_code_calls_the_installed_implementations(tiny_llama):
    from appliance.runtime.llm import LLM
    from appliance.runtime.sampling_params import SamplingParams

    llm = LLM(str(tiny_llama), max_model_len=64)
    greedy = SamplingParams(max_tokens=3, temperature=0)
    expected = llm.generate([[1, 2, 3, 4]], greedy)[0].token_ids
    calls = {op: 0 for op in kernels.OPERATIONS}

    def counting(op):
        def impl(*args, **kwargs):
            calls[op] += 1
            return kernels.REFERENCES[op](*args, **kwargs)
        return impl

    kernels.use_implementations({op: counting(op) for op in kernels.OPERATIONS})
    assert llm.generate([[1, 2, 3, 4]], greedy)[0].token_ids == expected
    assert all(n > 0 for n in calls.values()), calls
