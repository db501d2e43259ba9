"""The gateway overhead benchmark stays runnable and measures like for like: every path (the replica's /generate,
a session straight to the replica, the gateway, and a gateway with a stream per request) relays every token of the
same workload."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_gateway_bench_relays_the_same_tokens_on_every_path(tmp_path):
    out = tmp_path / "gateway.json"
    cmd = [sys.executable, "-m", "appliance.gateway.bench", "--model", "tiny", "--backend", "sqlite", "--rounds", "1",
           "--requests", "8", "--concurrency", "4", "--max-tokens", "6", "--gateways", "gateway,gateway-streams",
           "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "added median TTFT" in run.stdout
    report = json.loads(out.read_text())
    paths = [report[path] for path in ("engine", "session", "gateway", "gateway-streams")]
    for side in paths:
        assert side["requests"] == 8 and side["errors"] == 0
        assert side["throughput_tok_s"] > 0 and side["ttft_median_ms"] > 0
    # the same output lengths on every path (varied around --max-tokens), every token counted on each
    assert len({side["completion_tokens"] for side in paths}) == 1 and paths[0]["completion_tokens"] != 8 * 6
    assert report["verdict_baseline"] == "engine" and set(report["comparisons"]) == {"engine", "session"}
    assert set(report["comparisons_by_gateway"]) == {"gateway", "gateway-streams"}
    for comparison in report["comparisons"].values():
        assert len(comparison["per_round"]["added_median_ttft_ms"]) == 1
    assert report["added_median_ttft_ms"] == report["comparisons"]["engine"]["added_median_ttft_ms"]
    assert report["targets"] == {"added_median_ttft_ms_max": 5.0, "throughput_share_pct_min": 95.0}
    # the process CPU clock ticks in 10 ms: the quick form's 48-token phases may use less than one tick
    assert report["cpu_us_per_token"]["gateway"]["gateway"] >= 0
    assert report["cpu_us_per_token"]["gateway-streams"]["gateway-streams"] >= 0
    assert all(phase["engine_ttft_s"] > 0 for phase in report["phases"])
