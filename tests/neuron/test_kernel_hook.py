"""The kernel dispatch hook: the model code's hot operations go through appliance.runtime.kernels, and the Neuron
executor routes them to nki_kernels.<op>.kernel when the compile job enabled kernels (only checked here with SDK test
doubles: the NKI kernels are not executed by these tests; nki_kernels' own tests run them on the simulator)."""
import inspect

import pytest

import nki_kernels
from appliance.runtime import kernels
from appliance.runtime.neuron.compile import compile_artifact
from appliance.runtime.neuron.executor import NeuronExecutor
from appliance.runtime.neuron.kernel_hook import install_neuron_kernels


@pytest.fixture(autouse=True)
def restore_references():
    yield
    kernels.use_implementations(None)


def test_nki_kernels_have_the_dispatch_signatures():
    for op in kernels.OPERATIONS:
        ref = inspect.signature(kernels.REFERENCES[op]).parameters
        assert list(inspect.signature(getattr(nki_kernels, op).reference).parameters) == list(ref)


def test_install_routes_every_operation_to_its_nki_kernel_only_on_neuron():
    assert install_neuron_kernels(enabled=True, on_neuron_device=False) == []
    assert kernels.rms_norm is kernels.REFERENCES["rms_norm"]
    assert install_neuron_kernels(enabled=True, on_neuron_device=True) == sorted(kernels.OPERATIONS)
    for op in kernels.OPERATIONS:
        assert getattr(kernels, op) is getattr(nki_kernels, op).kernel
    install_neuron_kernels(enabled=False, on_neuron_device=True)
    assert all(getattr(kernels, op) is kernels.REFERENCES[op] for op in kernels.OPERATIONS)
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


def test_executor_installs_nki_kernels_when_the_artifact_enables_them(nxdi_sdk, tiny_llama, tmp_path):
    opts = {"tp_degree": 1, "batch_sizes": [2], "max_model_len": 128, "max_context_length": 128, "kernels": True}
    compile_artifact(tiny_llama, opts, tmp_path / "k")
    ex = NeuronExecutor(tmp_path / "k", environ={"NEURON_RT_VISIBLE_CORES": "0"})
    assert ex.nki_operations == sorted(kernels.OPERATIONS)
    assert kernels.paged_decode_attention is nki_kernels.paged_decode_attention.kernel
    compile_artifact(tiny_llama, {**opts, "kernels": False}, tmp_path / "n")
    NeuronExecutor(tmp_path / "n", environ={"NEURON_RT_VISIBLE_CORES": "0"})
    assert kernels.paged_decode_attention is kernels.REFERENCES["paged_decode_attention"]
