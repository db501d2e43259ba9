"""Prometheus metrics of one encoder replica (its own CollectorRegistry); names in docs/metrics.md."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "appliance_encoder_"
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class EncoderMetrics:
    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        r, labels, self.model_name = self.registry, ["model"], model_name
        self.requests = Counter(PREFIX + "requests", "Embedding requests served", labels, registry=r)
        self.inputs = Counter(PREFIX + "inputs", "Inputs embedded", labels, registry=r)
        self.tokens = Counter(PREFIX + "prompt_tokens", "Input tokens embedded", labels, registry=r)
        self.forwards = Counter(PREFIX + "forwards", "Model forwards run", labels, registry=r)
        self.batch_inputs = Histogram(PREFIX + "batch_inputs", "Inputs per model forward", labels, buckets=_SIZES,
                                      registry=r)
        self.batch_requests = Histogram(PREFIX + "batch_requests", "Requests served together by one batch", labels,
                                        buckets=_SIZES, registry=r)
        self.queue_time = Histogram(PREFIX + "queue_time_seconds", "Time a request waited before its batch ran",
                                    labels, buckets=_LATENCY, registry=r)
        self.latency = Histogram(PREFIX + "request_latency_seconds", "Time from arrival to the embeddings", labels,
                                 buckets=_LATENCY, registry=r)
        self.waiting = Gauge(PREFIX + "num_requests_waiting", "Requests queued for the next batch", labels,
                             registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
