"""The gateway overhead benchmark stays runnable and measures like for like: both paths relay every token of the
same workload."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_gateway_bench_relays_the_same_tokens_on_both_paths(tmp_path):
    out = tmp_path / "gateway.json"
    cmd = [sys.executable, "-m", "appliance.gateway.bench", "--model", "tiny", "--backend", "sqlite", "--rounds", "1",
           "--requests", "8", "--concurrency", "4", "--max-tokens", "6", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "added median TTFT" in run.stdout
    report = json.loads(out.read_text())
    engine, gateway = report["engine"], report["gateway"]
    for side in (engine, gateway):
        assert side["requests"] == 8 and side["errors"] == 0
        assert side["throughput_tok_s"] > 0 and side["ttft_median_ms"] > 0
    # the same output lengths on both paths (varied around --max-tokens), every token counted by each
    assert engine["completion_tokens"] == gateway["completion_tokens"] != 8 * 6
    assert len(report["per_round"]["added_median_ttft_ms"]) == 1
    assert report["targets"] == {"added_median_ttft_ms_max": 5.0, "throughput_share_pct_min": 95.0}
    assert report["cpu_us_per_token"]["gateway_phases"]["gateway"] > 0
    assert all(phase["engine_ttft_s"] > 0 for phase in report["phases"])
