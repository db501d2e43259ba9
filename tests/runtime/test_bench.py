"""The benchmark script stays runnable: --quick on a tiny model, all three systems, a complete JSON report."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_bench_writes_a_complete_report(tmp_path):
    out = tmp_path / "engine.json"
    cmd = [sys.executable, "-m", "appliance.runtime.bench", "--quick", "--num-requests", "4", "--out", str(out),
           "--cache-dir", str(tmp_path / "models")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "engine / best baseline" in run.stdout
    report = json.loads(out.read_text())
    systems = report["systems"]
    assert set(systems) == {"engine", "transformers_static", "transformers_continuous"}
    expected = report["workload"]["output_tokens"]
    for s in systems.values():
        assert s["output_tokens"] == expected
        assert s["throughput_tok_s"] > 0
        assert 0 < s["ttft_p50_s"] <= s["ttft_p99_s"]
        assert s["itl_p50_s"] is not None
    best = max(systems["transformers_static"]["throughput_tok_s"], systems["transformers_continuous"]["throughput_tok_s"])
    assert abs(report["ratio_engine_to_best_baseline"] - systems["engine"]["throughput_tok_s"] / best) < 0.01
    assert 0 <= report["engine_outside_forward_share"]["overall"] <= 1


def test_cuda_without_a_gpu_says_so_and_measures_nothing(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = tmp_path / "cuda.json"
    run = subprocess.run([sys.executable, "-m", "appliance.runtime.bench", "--device", "cuda", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "no CUDA device" in run.stderr
    assert not out.exists()
