"""Gateway metrics in the web process's default Prometheus registry (exposed at /metrics by telemetry)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter("appliance_gateway_requests_total", "OpenAI API requests by model, endpoint and HTTP status",
                   ["model", "endpoint", "status"])
TTFT = Histogram("appliance_gateway_ttft_seconds", "Request arrival to first token, as the gateway saw it",
                 ["model"], buckets=LATENCY_BUCKETS)
LATENCY = Histogram("appliance_gateway_request_latency_seconds", "Request arrival to last byte",
                    ["model", "endpoint"], buckets=LATENCY_BUCKETS)
TOKENS = Counter("appliance_gateway_tokens_total", "Tokens metered by the gateway", ["model", "kind"])
INFLIGHT = Gauge("appliance_gateway_inflight_requests", "Requests in flight in this process", ["model"])
RATE_LIMITED = Counter("appliance_gateway_rate_limited_total", "Requests refused by a quota", ["reason", "scope"])
EARLY_DISPATCH = Counter("appliance_gateway_early_dispatch_total",
                         "Requests sent to a replica while their admission was in flight, by outcome "
                         "(relayed: admitted; aborted: refused after all, aborted at the engine)", ["outcome"])
QUEUE = Histogram("appliance_gateway_queue_seconds",
                  "Time a request waited in its tenant's queue for a concurrency slot, by outcome (admitted; refused: "
                  "a 429 past the tenant's max_queue_wait_s; left: its client went away)", ["outcome"],
                  buckets=LATENCY_BUCKETS)
