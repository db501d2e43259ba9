"""The appliance's /metrics, scraped as Prometheus would after some requests, carries the engine's figures under
vLLM's names and types with a model_name label; the shipped Grafana dashboard asks only for series it has."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import World

pytestmark = pytest.mark.django_db
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "vllm.json"

TYPES = {
    "vllm:num_requests_running": "gauge", "vllm:num_requests_waiting": "gauge", "vllm:kv_cache_usage_perc": "gauge",
    "vllm:prompt_tokens": "counter", "vllm:generation_tokens": "counter", "vllm:request_success": "counter",
    "vllm:prefix_cache_queries": "counter", "vllm:prefix_cache_hits": "counter",
    "vllm:time_to_first_token_seconds": "histogram", "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram", "vllm:request_queue_time_seconds": "histogram",
}


@pytest.fixture(scope="module")
def scrape(world: World) -> dict:
    import openai

    with openai.OpenAI(base_url=world.appliance.v1, api_key=world.acme_key, max_retries=0) as client:
        for _ in range(2):  # the second one hits the prefix cache
            client.completions.create(model=world.model, prompt="The same prompt, twice over " * 3, max_tokens=4,
                                      extra_body={"ignore_eos": True})
    text = world.appliance.metrics()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(family, **labels) -> float:
    return sum(s.value for s in family.samples if s.name == family.name + "_total"
               and all(s.labels.get(k) == v for k, v in labels.items()))


def test_vllm_series_have_vllms_types_and_labels(scrape: dict):
    for name, kind in TYPES.items():
        assert name in scrape and scrape[name].type == kind, name
        sample = scrape[name].samples[0]
        assert sample.labels["model_name"] and sample.labels["engine"] == "0", name
        assert sample.labels["deployment"] and sample.labels["replica"], name  # added by the control plane
    assert value(scrape["vllm:generation_tokens"]) >= 8 and value(scrape["vllm:prompt_tokens"]) > 0
    assert value(scrape["vllm:request_success"], finished_reason="length") >= 2
    assert value(scrape["vllm:prefix_cache_hits"]) > 0
    assert value(scrape["vllm:prefix_cache_queries"]) >= value(scrape["vllm:prefix_cache_hits"])
    ttft = scrape["vllm:time_to_first_token_seconds"]
    assert any(s.name.endswith("_count") and s.value >= 2 for s in ttft.samples)
    buckets = sorted({float(s.labels["le"]) for s in ttft.samples if s.name.endswith("_bucket")})
    assert buckets[:3] == [0.001, 0.005, 0.01] and buckets[-2] == 2560.0  # vLLM's buckets, then +Inf


def test_dashboard_queries_only_series_and_labels_the_scrape_has(scrape: dict):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    samples = {s.name: s.labels for f in scrape.values() for s in f.samples}
    referenced = {m for e in exprs for m in re.findall(r"vllm:[a-z0-9_]+", e)}
    assert len(referenced) >= 15
    for series in referenced:
        assert series in samples, f"the dashboard asks for {series}, which /metrics does not have"
    for label in {label for e in exprs for label in re.findall(r"(\w+)=~?\"", e)} - {"__name__"}:
        assert any(label in labels for labels in samples.values()), label
