"""Selecting the neuron target: a missing or mismatched SDK is a clear error, and the emulator is only ever a labelled
stand-in, never used where the real SDK is installed."""
import sys
from types import ModuleType

import pytest

from appliance.runtime.neuron import sdk
from appliance.runtime.neuron.compile import compile_artifact
from appliance.runtime.neuron.sdk import NeuronSDKUnavailable

SDK_MODULES = ("torch_neuronx", "neuronx_distributed_inference")


@pytest.fixture
def no_sdk(monkeypatch):
    monkeypatch.delenv(sdk.SDK_ENV, raising=False)
    for name in SDK_MODULES:  # None in sys.modules makes the import fail even where a package is installed
        monkeypatch.setitem(sys.modules, name, None)


def fake_sdk(monkeypatch, nxdi: str = sdk.NXDI_VERSION, transformers: str = "4.57.1") -> None:
    """Empty modules with version numbers standing in for installed SDK packages (TEST DOUBLE: nothing else)."""
    monkeypatch.setitem(sys.modules, "torch_neuronx", ModuleType("torch_neuronx"))
    monkeypatch.setitem(sys.modules, "neuronx_distributed_inference", ModuleType("neuronx_distributed_inference"))
    found = {"torch-neuronx": sdk.TORCH_NEURONX_VERSION, "neuronx-distributed-inference": nxdi,
             "transformers": transformers}
    monkeypatch.setattr(sdk, "installed_version", lambda module, dist: found.get(dist))


def test_missing_sdk_error_names_the_packages_and_how_to_get_them(no_sdk):
    with pytest.raises(NeuronSDKUnavailable) as e:
        sdk.require("nxdi")
    msg = str(e.value)
    assert "Neuron SDK 2.28.1" in msg and "torch_neuronx" in msg and "neuronx_distributed_inference" in msg
    assert "AMI" in msg and "pip.repos.neuron.amazonaws.com" in msg and "neuronx-distributed-inference==0.8.16251" in msg
    with pytest.raises(ValueError, match="transformers-neuronx was removed"):
        sdk.require("tnx")


def test_transformers_5_next_to_nxd_inference_is_refused_with_the_reason(monkeypatch):
    """NxD Inference 0.8's hf_adapter imports SampleDecoderOnlyOutput, which transformers 5 removed."""
    monkeypatch.delenv(sdk.SDK_ENV, raising=False)
    fake_sdk(monkeypatch, transformers="5.23.0")
    with pytest.raises(NeuronSDKUnavailable, match=r"transformers 5.23.0 \(NxD Inference 0.8.16251 requires 4.57.\*"):
        sdk.require()
    fake_sdk(monkeypatch, transformers="4.57.1")
    assert "neuronx_distributed_inference" in sdk.require()


def test_an_sdk_module_that_does_not_import_is_reported_not_raised_raw(monkeypatch):
    monkeypatch.delenv(sdk.SDK_ENV, raising=False)
    fake_sdk(monkeypatch)
    with pytest.raises(NeuronSDKUnavailable, match=r"neuronx_distributed_inference.models.config does not import"):
        sdk.load_nxdi()


def test_compiling_without_the_sdk_fails_before_writing_anything(no_sdk, tiny_llama, tmp_path):
    out = tmp_path / "artifact"
    with pytest.raises(NeuronSDKUnavailable, match="not importable on this machine"):
        compile_artifact(tiny_llama, {"max_model_len": 512}, out)
    assert list(tmp_path.iterdir()) == []


def test_wrong_sdk_release_is_refused_unless_overridden(monkeypatch):
    monkeypatch.delenv(sdk.SDK_ENV, raising=False)
    fake_sdk(monkeypatch, nxdi="0.7.14366")
    with pytest.raises(NeuronSDKUnavailable, match=r"pinned to Neuron SDK 2.28.1, found neuronx-distributed-inference "
                                                   r"0.7.14366"):
        sdk.require("nxdi")
    monkeypatch.setenv(sdk.ALLOW_VERSION_MISMATCH_ENV, "1")
    assert "neuronx_distributed_inference" in sdk.require("nxdi")


def test_the_emulator_is_labelled_and_refused_where_the_real_sdk_imports(monkeypatch, tiny_llama):
    monkeypatch.setenv(sdk.SDK_ENV, "emulator")
    api = sdk.load_nxdi()
    assert api.emulated and "TEST DOUBLE" in sdk.versions()["emulator"]
    assert sdk.toolchain_version() == "neuron-sdk-2.28.1-emulator"
    monkeypatch.setitem(sys.modules, "neuronx_distributed_inference", ModuleType("neuronx_distributed_inference"))
    with pytest.raises(NeuronSDKUnavailable, match="never used in its place"):
        sdk.load_nxdi()


def test_importing_the_neuron_package_does_not_import_the_sdk(no_sdk):
    import importlib

    for mod in ("options", "buckets", "nxdi_backend", "compile", "cores", "executor", "nxdi_llama"):
        importlib.import_module(f"appliance.runtime.neuron.{mod}")


def test_release_comparison_ignores_only_the_build_number():
    assert sdk._same_release("0.8.16251+abcdef12.dev", "0.8.16251")
    assert sdk._same_release("2.9.0.2.12.99999", sdk.TORCH_NEURONX_VERSION)
    assert not sdk._same_release("2.9.0.2.11.19912", sdk.TORCH_NEURONX_VERSION)  # the SDK 2.27 build
    assert not sdk._same_release(None, sdk.NXDI_VERSION)


def test_compile_command_reports_a_missing_sdk_as_an_error_not_a_traceback(no_sdk, tiny_llama, tmp_path, capsys):
    from appliance.runtime.neuron.compile import main

    assert main([str(tiny_llama), str(tmp_path / "a"), "--options", '{"max_model_len": 512}']) == 2
    err = capsys.readouterr().err
    assert "error: The neuron target needs the AWS Neuron SDK 2.28.1" in err and "Traceback" not in err
