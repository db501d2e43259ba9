"""The stall benchmark stays runnable, and what it reports shows the token budget at work: with streams decoding
while a long prompt arrives, no decoding step carries more than the budget; without a budget one carries the prompt."""
from __future__ import annotations

import json

import pytest

from appliance.runtime import bench_stall


def run_stall(tmp_path, budget: int) -> dict:
    out = tmp_path / f"stall-{budget}.json"
    argv = ["--quick", "--streams", "3", "--prompt-len", "200", "--output-len", "24", "--interval-s", "0",
            "--threads", "1", "--out", str(out), "--cache-dir", str(tmp_path / "models"),
            "--engine-arg", f"step_token_budget={budget}", "--engine-arg", "max_num_batched_tokens=256", "--engine-arg", "max_num_seqs=4"]
    assert bench_stall.main(argv) == 0
    return json.loads(out.read_text())


@pytest.mark.slow
def test_a_decoding_step_never_carries_more_than_the_step_token_budget(tmp_path, capsys):
    report = run_stall(tmp_path, budget=32)
    s = report["summary"]
    out = capsys.readouterr().out
    assert "ITL p50" in out
    assert s["streams"] == 3 and s["max_concurrent_streams"] >= 2  # some prompt prefilled while another decoded
    assert ("streams ran at once" in out) == (s["max_concurrent_streams"] < 3)
    assert 0 < s["max_tokens_in_a_decoding_step"] <= 32
    assert s["itl_p50_s"] > 0 and s["itl_p99_s"] >= s["itl_p50_s"]
    assert report["settings"]["step_token_budget"] == 32


@pytest.mark.slow
def test_without_a_budget_a_decoding_step_carries_a_whole_prompt_chunk(tmp_path):
    s = run_stall(tmp_path, budget=256)["summary"]
    assert s["max_tokens_in_a_decoding_step"] > 32
