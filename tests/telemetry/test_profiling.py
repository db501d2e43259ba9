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
