"""Selecting the neuron target on a machine without the Neuron SDK fails with a clear, actionable error."""
import sys

import pytest

from appliance.runtime.neuron import sdk
from appliance.runtime.neuron.compile import compile_artifact
from appliance.runtime.neuron.sdk import NeuronSDKUnavailable
from tests.neuron.sdk_doubles import install_nxdi

SDK_MODULES = ("torch_neuronx", "neuronx_distributed_inference", "transformers_neuronx")


@pytest.fixture
def no_sdk(monkeypatch):
    for name in SDK_MODULES:  # None in sys.modules makes the import fail even where a package is installed
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_sdk_error_names_the_packages_and_how_to_get_them(no_sdk):
    with pytest.raises(NeuronSDKUnavailable) as e:
        sdk.require("nxdi")
    msg = str(e.value)
    assert "Neuron SDK 2.28.1" in msg and "torch_neuronx" in msg and "neuronx_distributed_inference" in msg
    assert "AMI" in msg and "pip.repos.neuron.amazonaws.com" in msg and "neuronx-distributed-inference==0.8.16251" in msg
    with pytest.raises(NeuronSDKUnavailable, match=r"Neuron SDK 2.26.1.*transformers_neuronx.*transformers-neuronx==0.13.1315"):
        sdk.require("tnx")


def test_compiling_without_the_sdk_fails_before_writing_anything(no_sdk, tiny_llama, tmp_path):
    out = tmp_path / "artifact"
    with pytest.raises(NeuronSDKUnavailable, match="not importable on this machine"):
        compile_artifact(tiny_llama, {"max_model_len": 256, "max_context_length": 256}, out)
    assert list(tmp_path.iterdir()) == []


def test_wrong_sdk_release_is_refused_unless_overridden(monkeypatch):
    install_nxdi(monkeypatch, version="0.7.14366")
    with pytest.raises(NeuronSDKUnavailable, match=r"pinned to Neuron SDK 2.28.1, found neuronx-distributed-inference 0.7.14366"):
        sdk.require("nxdi")
    monkeypatch.setenv(sdk.ALLOW_VERSION_MISMATCH_ENV, "1")
    assert "neuronx_distributed_inference" in sdk.require("nxdi")


def test_importing_the_neuron_package_does_not_import_the_sdk(no_sdk):
    import importlib

    for mod in ("options", "buckets", "nxdi_backend", "tnx_backend", "compile", "cores"):
        importlib.import_module(f"appliance.runtime.neuron.{mod}")


def test_release_comparison_ignores_only_the_build_number():
    assert sdk._same_release("0.8.16251+abcdef12.dev", "0.8.16251")
    assert sdk._same_release("2.9.0.2.12.99999", sdk.TORCH_NEURONX_VERSION)
    assert not sdk._same_release("2.9.0.2.11.19912", sdk.TORCH_NEURONX_VERSION)  # the SDK 2.27 build
    assert not sdk._same_release(None, sdk.NXDI_VERSION)


def test_compile_command_reports_a_missing_sdk_as_an_error_not_a_traceback(no_sdk, tiny_llama, tmp_path, capsys):
    from appliance.runtime.neuron.compile import main

    assert main([str(tiny_llama), str(tmp_path / "a"), "--options", '{"max_model_len": 256, "max_context_length": 256}']) == 2
    err = capsys.readouterr().err
    assert "error: The neuron target (backend 'nxdi') needs the AWS Neuron SDK 2.28.1" in err and "Traceback" not in err
