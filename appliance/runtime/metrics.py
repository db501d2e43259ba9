"""Prometheus metrics of one engine: per request (queue time, TTFT, inter-token latency, end-to-end, token counts)
and per engine (running/waiting, KV blocks, prefix cache, preemptions, tokens per step, step time split into the model
forward and everything else). Each engine owns its CollectorRegistry. Names are documented in docs/metrics.md; the
same engine figures also go out under vLLM's names (vllm_metrics.py)."""
from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from appliance.runtime.outputs import RequestOutput
from appliance.runtime.vllm_metrics import VllmMetrics

PREFIX = "appliance_engine_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5,
                    2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
                0.75, 1.0, 2.5, 5.0)
_TOKEN_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class EngineStatsLike(Protocol):
    num_running: int
    num_waiting: int
    kv_blocks_used: int
    kv_blocks_total: int
    prefix_cache_queried_tokens: int
    prefix_cache_hit_tokens: int
    num_preemptions: int
    steps: int
    last_step_num_batched_tokens: int
    last_step_num_seqs: int
    step_time_total_s: float
    forward_time_total_s: float
    step_time_s: float
    forward_time_s: float


class _StatsCollector:
    """Reads the engine's latest stats snapshot at scrape time: gauges and the engine's own cumulative counters."""

    def __init__(self, metrics: "EngineMetrics") -> None:
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        s = self.metrics.latest_stats
        if s is None:
            return
        label = [self.metrics.model_name]

        def gauge(name: str, doc: str, value: float):
            g = GaugeMetricFamily(PREFIX + name, doc, labels=["model"])
            g.add_metric(label, value)
            return g

        def counter(name: str, doc: str, value: float):
            c = CounterMetricFamily(PREFIX + name, doc, labels=["model"])
            c.add_metric(label, value)
            return c

        yield from self.metrics.vllm.collect_stats(s)
        yield gauge("num_requests_running", "Sequences groups scheduled in the running set", s.num_running)
        yield gauge("num_requests_waiting", "Requests waiting to be scheduled (including preempted)", s.num_waiting)
        yield gauge("kv_blocks_used", "KV cache blocks in use", s.kv_blocks_used)
        yield gauge("kv_blocks_total", "KV cache blocks in the pool", s.kv_blocks_total)
        yield gauge("kv_cache_usage_ratio", "Fraction of KV cache blocks in use",
                    s.kv_blocks_used / s.kv_blocks_total if s.kv_blocks_total else 0.0)
        yield gauge("last_step_batched_tokens", "Tokens in the most recent step", s.last_step_num_batched_tokens)
        yield gauge("last_step_num_seqs", "Sequences in the most recent step", s.last_step_num_seqs)
        yield counter("prefix_cache_queried_tokens", "Prompt tokens looked up in the prefix cache",
                      s.prefix_cache_queried_tokens)
        yield counter("prefix_cache_hit_tokens", "Prompt tokens served from the prefix cache", s.prefix_cache_hit_tokens)
        yield counter("preemptions", "Sequences preempted (recomputed) because KV blocks ran out", s.num_preemptions)
        yield counter("steps", "Engine steps run", s.steps)
        yield counter("step_time_seconds", "Wall time inside engine steps", s.step_time_total_s)
        yield counter("forward_time_seconds", "Wall time inside the model forward", s.forward_time_total_s)
        yield counter("step_overhead_seconds", "Step time outside the model forward (scheduling, sampling, ...)",
                      max(s.step_time_total_s - s.forward_time_total_s, 0.0))


class EngineMetrics:
    """All metrics of one engine, in a registry of its own. Thread-safe: the stepping thread observes, the server
    thread scrapes."""

    def __init__(self, model_name: str = "", info: dict[str, Any] | None = None) -> None:
        self.model_name = model_name
        self.registry = CollectorRegistry(auto_describe=True)
        self.latest_stats: EngineStatsLike | None = None
        self._first_seen: set[str] = set()
        self._itls_seen: dict[str, int] = {}
        labels = ["model"]
        r = self.registry

        def hist(name: str, doc: str, buckets) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, registry=r, buckets=buckets).labels(model_name)

        self.queue_time = hist("request_queue_seconds", "Arrival to first scheduled", _LATENCY_BUCKETS)
        self.ttft = hist("request_ttft_seconds", "Arrival to first generated token", _LATENCY_BUCKETS)
        self.itl = hist("request_inter_token_seconds", "Time between consecutive tokens of a request", _ITL_BUCKETS)
        self.e2e = hist("request_e2e_seconds", "Arrival to finish", _LATENCY_BUCKETS)
        self.prompt_len = hist("request_prompt_tokens", "Prompt length per request", _TOKEN_BUCKETS)
        self.gen_len = hist("request_generation_tokens", "Generated tokens per request (all n completions)",
                            _TOKEN_BUCKETS)
        self.step_tokens = hist("step_batched_tokens", "Tokens scheduled per engine step", _TOKEN_BUCKETS)
        self.step_seqs = hist("step_num_seqs", "Sequences per engine step", _TOKEN_BUCKETS)
        self.step_time = hist("step_seconds", "Wall time of one engine step", _ITL_BUCKETS)
        self.forward_time = hist("step_forward_seconds", "Model forward time within one engine step", _ITL_BUCKETS)
        self.finished = Counter(PREFIX + "requests_finished", "Requests finished, by reason",
                                labels + ["finish_reason"], registry=r)
        self.prompt_tokens = Counter(PREFIX + "prompt_tokens", "Prompt tokens of admitted requests", labels,
                                     registry=r).labels(model_name)
        self.generation_tokens = Counter(PREFIX + "generation_tokens", "Generated tokens", labels,
                                         registry=r).labels(model_name)
        self.rejected = Counter(PREFIX + "requests_rejected", "Requests rejected as invalid before running", labels,
                                registry=r).labels(model_name)
        self.vllm = VllmMetrics(r, model_name, int((info or {}).get("max_model_len") or 0) or 8192)
        build = Gauge(PREFIX + "info", "Static facts about the engine", labels + sorted(info or {}), registry=r)
        build.labels(model_name, *[str(v) for _, v in sorted((info or {}).items())]).set(1)
        r.register(_StatsCollector(self))

    def observe_stats(self, stats: EngineStatsLike, stepped: bool) -> None:
        """Record the stats snapshot after a step (stepped=True observes the per-step histograms) or an idle check."""
        self.latest_stats = stats
        if stepped:
            self.step_tokens.observe(stats.last_step_num_batched_tokens)
            self.vllm.observe_step(stats.last_step_num_batched_tokens)
            self.step_seqs.observe(stats.last_step_num_seqs)
            self.step_time.observe(stats.step_time_s)
            self.forward_time.observe(stats.forward_time_s)

    def observe_output(self, out: RequestOutput) -> None:
        """Record one step's output of a request: first token, new inter-token latencies, and completion."""
        rid = out.request_id
        m = out.metrics
        new_tokens = sum(len(c.new_token_ids) for c in out.outputs)
        if new_tokens:
            self.generation_tokens.inc(new_tokens)
            self.vllm.generation_tokens.inc(new_tokens)
        if rid not in self._first_seen:
            self._first_seen.add(rid)
            self.prompt_tokens.inc(len(out.prompt_token_ids))
            self.vllm.observe_first(out)
            self.prompt_len.observe(len(out.prompt_token_ids))
            if m.queue_s is not None:
                self.queue_time.observe(max(m.queue_s, 0.0))
        if m.first_token_time is not None and self._itls_seen.get(rid) is None:
            self._itls_seen[rid] = 0
            self.ttft.observe(max(m.ttft_s or 0.0, 0.0))
            self.vllm.ttft.observe(max(m.ttft_s or 0.0, 0.0))
        seen = self._itls_seen.get(rid)
        if seen is not None and len(m.inter_token_latencies) > seen:
            for x in m.inter_token_latencies[seen:]:
                self.itl.observe(x)
                self.vllm.itl.observe(x)
            self._itls_seen[rid] = len(m.inter_token_latencies)
        if out.finished:
            self._first_seen.discard(rid)
            self._itls_seen.pop(rid, None)
            reason = next((c.finish_reason for c in out.outputs if c.finish_reason != "abort"), "abort") or "abort"
            self.finished.labels(self.model_name, reason).inc()
            self.vllm.observe_finished(out, reason)
            self.gen_len.observe(sum(len(c.token_ids) for c in out.outputs))
            if m.e2e_s is not None:
                self.e2e.observe(max(m.e2e_s, 0.0))

    def observe_abort(self, request_id: str) -> None:
        """Count a request aborted by its client (no finished output follows) and drop its bookkeeping."""
        self._first_seen.discard(request_id)
        self._itls_seen.pop(request_id, None)
        self.finished.labels(self.model_name, "abort").inc()
        self.vllm.success["abort"].inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of this engine's registry."""
        return generate_latest(self.registry)
