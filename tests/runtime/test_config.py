"""EngineConfig's step token budget: its defaults on the CPU and with compiled buckets, and clear errors."""
from __future__ import annotations

import json

import pytest

from appliance.runtime.config import DEFAULT_STEP_TOKEN_BUDGET, EngineConfig, default_step_token_budget


@pytest.fixture()
def model_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 4096}))
    return str(tmp_path)


def test_cpu_default_budget_is_256_under_the_2048_hard_cap(model_dir):
    cfg = EngineConfig(model_dir)
    assert cfg.max_num_batched_tokens == 2048
    assert cfg.step_token_budget == DEFAULT_STEP_TOKEN_BUDGET == 256


def test_default_budget_never_exceeds_the_hard_cap(model_dir):
    assert EngineConfig(model_dir, max_num_batched_tokens=128).step_token_budget == 128
    assert EngineConfig(model_dir, max_num_seqs=4, max_num_batched_tokens=8).step_token_budget == 8


def test_default_budget_leaves_room_for_prefills_when_many_sequences_decode(model_dir):
    assert EngineConfig(model_dir, max_num_seqs=400, max_num_batched_tokens=4096).step_token_budget == 800


def test_bucketed_default_budget_is_a_compiled_context_bucket():
    assert default_step_token_budget(2048, 8, (128, 192, 1024, 2048)) == 192
    assert default_step_token_budget(2048, 8, (512, 1024, 2048)) == 512  # none that small: the smallest bucket
    assert default_step_token_budget(256, 8, (1024, 2048)) == 256  # never above the hard cap


def test_bucketed_config_picks_its_budget_from_the_context_buckets(model_dir):
    cfg = EngineConfig(model_dir, max_num_seqs=8, max_num_batched_tokens=1024, max_model_len=1024,
                       bucketing={"batch_sizes": [8], "context_lengths": [256, 1024], "token_lengths": [1024]})
    assert cfg.step_token_budget == 256


def test_without_chunked_prefill_the_budget_is_the_hard_cap(model_dir):
    cfg = EngineConfig(model_dir, enable_chunked_prefill=False, max_num_batched_tokens=4096)
    assert cfg.step_token_budget == 4096
    with pytest.raises(ValueError, match="chunked prefill is off"):
        EngineConfig(model_dir, enable_chunked_prefill=False, max_num_batched_tokens=4096, step_token_budget=512)


@pytest.mark.parametrize("budget", [0, 4096, "512", True])
def test_out_of_range_budget_is_rejected_naming_the_field(model_dir, budget):
    with pytest.raises(ValueError, match="step_token_budget"):
        EngineConfig(model_dir, step_token_budget=budget)


def test_a_budget_below_max_num_seqs_is_rejected_since_prefills_would_starve(model_dir):
    with pytest.raises(ValueError, match="at least max_num_seqs"):
        EngineConfig(model_dir, max_num_seqs=64, step_token_budget=32)
