"""The engine's metrics under vLLM's names, types, labels and buckets (vllm/v1/metrics/loggers.py), beside the
appliance's own, so dashboards built for vLLM (deploy/grafana/vllm.json, vLLM's published one) work unchanged.

Labels as vLLM's: ``model_name`` (the served name: the deployment) and ``engine`` ("0": one engine core per
replica). The control plane's /metrics adds ``deployment`` and ``replica`` when it relabels a replica's series.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from appliance.runtime.outputs import RequestOutput

LABELS = ["model_name", "engine"]
FINISH_REASONS = ("stop", "length", "abort")

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
               80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                           240.0, 480.0, 960.0, 1920.0, 7680.0)
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def buckets_1_2_5(max_value: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to max_value (vLLM's token-count buckets)."""
    out, scale = [], 1
    while True:
        for m in (1, 2, 5):
            if m * scale > max_value:
                return out
            out.append(m * scale)
        scale *= 10


class VllmMetrics:
    """Registers vLLM's series in an engine's registry and updates them from the engine's outputs and stats."""

    def __init__(self, registry: CollectorRegistry, model_name: str, max_model_len: int) -> None:
        self.labels = [model_name, "0"]
        token_buckets = buckets_1_2_5(max(max_model_len, 1))

        def hist(name: str, doc: str, buckets) -> Histogram:
            return Histogram("vllm:" + name, doc, LABELS, registry=registry, buckets=buckets).labels(*self.labels)

        def counter(name: str, doc: str) -> Counter:
            return Counter("vllm:" + name, doc, LABELS, registry=registry).labels(*self.labels)

        self.prompt_tokens = counter("prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("generation_tokens", "Number of generation tokens processed.")
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          LABELS + ["finished_reason"], registry=registry)
        self.success = {r: success.labels(*self.labels, r) for r in FINISH_REASONS}
        self.ttft = hist("time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS)
        self.itl = hist("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ITL_BUCKETS)
        self.tpot = hist("request_time_per_output_token_seconds",
                         "Histogram of time_per_output_token_seconds per request.", ITL_BUCKETS)
        self.e2e = hist("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                        REQUEST_LATENCY_BUCKETS)
        self.queue = hist("request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.",
                          REQUEST_LATENCY_BUCKETS)
        self.inference = hist("request_inference_time_seconds",
                              "Histogram of time spent in RUNNING phase for request.", REQUEST_LATENCY_BUCKETS)
        self.prefill = hist("request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.",
                            REQUEST_LATENCY_BUCKETS)
        self.decode = hist("request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.",
                           REQUEST_LATENCY_BUCKETS)
        self.prompt_len = hist("request_prompt_tokens", "Number of prefill tokens processed.", token_buckets)
        self.gen_len = hist("request_generation_tokens", "Number of generation tokens processed.", token_buckets)
        self.max_gen_len = hist("request_max_num_generation_tokens",
                                "Histogram of maximum number of requested generation tokens.", token_buckets)
        self.n = hist("request_params_n", "Histogram of the n request parameter.", (1, 2, 5, 10, 20))
        self.iteration_tokens = hist("iteration_tokens_total", "Histogram of number of tokens per engine_step.",
                                     ITERATION_TOKEN_BUCKETS)

    def observe_step(self, batched_tokens: int) -> None:
        self.iteration_tokens.observe(batched_tokens)

    def observe_first(self, out: RequestOutput) -> None:
        self.prompt_tokens.inc(len(out.prompt_token_ids))

    def observe_finished(self, out: RequestOutput, reason: str) -> None:
        m = out.metrics
        self.success[reason if reason in self.success else "abort"].inc()
        self.prompt_len.observe(len(out.prompt_token_ids))
        generated = [len(c.token_ids) for c in out.outputs]
        self.gen_len.observe(sum(generated))
        self.max_gen_len.observe(max(generated, default=0))
        self.n.observe(len(out.outputs))
        if m.e2e_s is not None:
            self.e2e.observe(max(m.e2e_s, 0.0))
        if m.first_scheduled_time is not None and m.finished_time is not None:
            self.queue.observe(max(m.queue_s or 0.0, 0.0))
            self.inference.observe(max(m.finished_time - m.first_scheduled_time, 0.0))
            first = m.first_token_time if m.first_token_time is not None else m.finished_time
            self.prefill.observe(max(first - m.first_scheduled_time, 0.0))
            self.decode.observe(max(m.finished_time - first, 0.0))
        if m.first_token_time is not None and m.finished_time is not None:
            longest = max(generated, default=0)
            self.tpot.observe((m.finished_time - m.first_token_time) / (longest - 1) if longest > 1 else 0.0)

    def collect_stats(self, stats) -> list:
        """Gauges and the engine's cumulative prefix-cache and preemption counters from a stats snapshot."""
        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily("vllm:" + name, doc, labels=LABELS)
            g.add_metric(self.labels, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily("vllm:" + name, doc, labels=LABELS)
            c.add_metric(self.labels, value)
            return c

        usage = stats.kv_blocks_used / stats.kv_blocks_total if stats.kv_blocks_total else 0.0
        return [
            gauge("num_requests_running", "Number of requests in model execution batches.", stats.num_running),
            gauge("num_requests_waiting", "Number of requests waiting to be processed.", stats.num_waiting),
            gauge("kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", usage),
            counter("prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.",
                    stats.prefix_cache_queried_tokens),
            counter("prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
                    stats.prefix_cache_hit_tokens),
            counter("num_preemptions", "Cumulative number of preemption from the engine.", stats.num_preemptions),
        ]
