from pathlib import Path

import pytest

from appliance.telemetry.profiling import neuron_profile_commands, parse_summary_json


def test_neuron_profile_commands_capture_then_view_summary_json(tmp_path):
    capture, view = neuron_profile_commands(Path("/art/tkg.neff"), tmp_path)
    assert capture == ["neuron-profile", "capture", "-n", "/art/tkg.neff", "-s", str(tmp_path / "tkg.ntff"),
                       "--profile-nth-exec=2"]
    assert view[:2] == ["neuron-profile", "view"] and view[-2:] == ["--output-format", "summary-json"]
    assert view[view.index("-s") + 1] == str(tmp_path / "tkg.ntff")


def test_summary_json_is_unwrapped_after_log_lines():
    text = 'level=info msg="processing"\n{"tkg": {"total_time": 0.012, "tensor_engine_active_time_percent": 41.5}}'
    assert parse_summary_json(text) == {"total_time": 0.012, "tensor_engine_active_time_percent": 41.5}


def test_summary_json_missing_is_a_clear_error():
    with pytest.raises(ValueError, match="no JSON summary"):
        parse_summary_json("level=error msg=failed")


def test_profiling_uses_the_neffs_a_compile_kept(tmp_path, monkeypatch, tiny_llama):
    """NxD Inference embeds its NEFFs in model.pt; the compile keeps each bucket's graph.neff for neuron-profile
    (here through the SDK emulator, whose NEFFs are labelled placeholders)."""
    from appliance.runtime.neuron.compile import compile_artifact
    from appliance.telemetry.profiling import artifact_neffs

    monkeypatch.setenv("APPLIANCE_NEURON_SDK", "emulator")
    compile_artifact(tiny_llama, {"tp_degree": 1, "kv_layout": "contiguous", "context_buckets": [128, 512],
                                  "token_buckets": [512]}, tmp_path / "a")
    assert [p.relative_to(tmp_path / "a").as_posix() for p in artifact_neffs(tmp_path / "a")] == [
        "neffs/context_encoding_model/bk0.neff", "neffs/context_encoding_model/bk1.neff",
        "neffs/token_generation_model/bk0.neff"]
    assert not list(tmp_path.glob(".*compiler-workdir"))


@pytest.mark.django_db
def test_profiling_runs_on_free_cores_never_the_live_replicas(tmp_path):
    from appliance.catalog.models import Deployment, Model, ModelVersion, Node, Replica
    from appliance.telemetry.profiling import free_cores_env

    node = Node.objects.create(name="inf2", device="neuron", cores=4)
    model = Model.objects.create(name="m")
    version = ModelVersion.objects.create(model=model, version=1, source_uri=str(tmp_path))
    dep = Deployment.objects.create(name="d", model_version=version, device="neuron")
    live = Replica.objects.create(deployment=dep, node=node, cores=[0, 1], state=Replica.State.READY)
    assert free_cores_env(live) == {"NEURON_RT_VISIBLE_CORES": "2-3"}
    Replica.objects.create(deployment=dep, node=node, index=1, cores=[2, 3], state=Replica.State.READY)
    with pytest.raises(RuntimeError, match="profiling needs 2 free contiguous NeuronCores on node inf2"):
        free_cores_env(live)
