"""The peer benchmark's harness: report arithmetic and token comparison over a labelled fake peer, and the whole
pipeline (subprocess workers, interleaving, JSON) with `--peer selftest`, the engine run again in the peer's place.
Neither is a vLLM result: vLLM is installed and run only by the benchmark itself, never by tests or CI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appliance.runtime.bench_peer import SELFTEST_LABEL, build_report
from appliance.runtime.bench_workload import WorkloadSpec

JOB = {"dtype": "float32", "max_model_len": 64,
       "requests": [{"id": "r0", "prompt_token_ids": [5, 6, 7], "max_tokens": 3},
                    {"id": "r1", "prompt_token_ids": [8, 9], "max_tokens": 2}]}
MODEL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}


def _raw(system: str, wall: float, r0: list[int], r1: list[int]) -> dict:
    """A worker's result JSON; for the fake peer this is a hand-written test double, not anything vLLM produced."""
    return {"system": system, "wall_s": wall, "versions": {"fake": "test double"},
            "requests": {"r0": {"token_ids": r0, "token_times": [0.1, 0.2, 0.3][: len(r0)]},
                         "r1": {"token_ids": r1, "token_times": [0.15, 0.4][: len(r1)]}}}


def _report(pairs):
    return build_report(JOB, pairs, "fake_peer", MODEL, WorkloadSpec(2, (2, 3), (2, 3), 1), threads=2)


def test_ratio_is_engine_throughput_over_the_peers_in_every_round():
    pairs = [{"engine": _raw("engine", 1.0, [1, 2, 3], [4, 5]), "fake_peer": _raw("fake_peer", 2.0, [1, 2, 3], [4, 5])},
             {"engine": _raw("engine", 2.0, [1, 2, 3], [4, 5]), "fake_peer": _raw("fake_peer", 1.0, [1, 2, 3], [4, 5])}]
    report = _report(pairs)
    assert [r["ratio_engine_to_peer"] for r in report["rounds"]] == [2.0, 0.5]
    assert report["ratio_min"] == 0.5 and report["ratio_mean"] == 1.25
    assert report["rounds"][0]["engine"]["throughput_tok_s"] == 5.0
    assert report["greedy_tokens_identical"] is True
    assert report["targets"]["met"] is False  # one round below 1.0x


def test_a_different_greedy_token_is_reported_with_where_it_happened():
    pairs = [{"engine": _raw("engine", 1.0, [1, 2, 3], [4, 5]), "fake_peer": _raw("fake_peer", 1.0, [1, 9, 3], [4, 5])}]
    report = _report(pairs)
    g = report["rounds"][0]["greedy_tokens"]
    assert g["identical"] is False and g["identical_requests"] == 1
    assert g["first_difference"] == {"request": "r0", "position": 1}
    assert report["targets"]["met"] is False


def test_a_system_that_stops_early_is_an_error_not_a_faster_result():
    pairs = [{"engine": _raw("engine", 1.0, [1, 2, 3], [4, 5]), "fake_peer": _raw("fake_peer", 0.1, [1, 2], [4, 5])}]
    with pytest.raises(RuntimeError, match="fake_peer run 1: wrong output token counts"):
        _report(pairs)


@pytest.mark.slow
def test_selftest_peer_runs_the_whole_harness_and_is_labelled_as_a_test_double(tmp_path):
    out = tmp_path / "peer.json"
    cmd = [sys.executable, "-m", "appliance.runtime.bench", "--peer", "selftest", "--quick", "--runs", "1",
           "--threads", "1", "--out", str(out), "--cache-dir", str(tmp_path / "models"),
           "--work-dir", str(tmp_path / "work")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "TEST DOUBLE" in run.stdout
    report = json.loads(out.read_text())
    assert report["peer"] == "selftest" and report["peer_label"] == SELFTEST_LABEL
    (round1,) = report["rounds"]
    assert round1["greedy_tokens"]["identical"] is True  # the same engine, greedy: the same tokens
    expected = report["workload"]["output_tokens"]
    assert round1["engine"]["output_tokens"] == expected == round1["selftest"]["output_tokens"]
    assert round1["ratio_engine_to_peer"] > 0
