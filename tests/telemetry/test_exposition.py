import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from appliance.catalog.models import Deployment, Device, Model, ModelVersion, Node, Replica
from appliance.telemetry import services
from appliance.telemetry.models import OccupancySample
from appliance.telemetry.neuron_monitor import parse_report

from .reports import report, runtime

pytestmark = pytest.mark.django_db


@pytest.fixture
def node():
    return Node.objects.create(name="node-a", device=Device.NEURON, cores=2)


def make_replica(node, name, cores, **fields):
    model = Model.objects.create(name=name)
    version = ModelVersion.objects.create(model=model, version=1, source_uri="/x")
    deployment = Deployment.objects.create(name=name, model_version=version, device=node.device)
    return Replica.objects.create(deployment=deployment, node=node, cores=cores, state=Replica.State.READY, **fields)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_neuron_report_samples_are_owned_by_the_replica_on_those_cores(node):
    a = make_replica(node, "model-a", [0])
    b = make_replica(node, "model-b", [1])
    services.record_neuron_report(node, parse_report(report(runtime(1, "a", {0: 30.0, 1: 80.0}, {0: 10, 1: 20}))))
    owners = {s.core: (s.replica_id, s.utilization_pct, s.memory_bytes) for s in OccupancySample.objects.all()}
    assert owners == {0: (a.id, 30.0, 10), 1: (b.id, 80.0, 20)}
    assert OccupancySample.objects.get(core=0).extra["latency_p50_s"] == 0.013


def test_cpu_replica_is_sampled_from_its_process(db):
    cpu_node = Node.objects.create(name="cpu-node", device=Device.CPU)
    replica = make_replica(cpu_node, "cpu-model", [], pid=os.getpid())
    (sample,) = services.sample_host(cpu_node)
    assert sample.replica_id == replica.id and sample.device == Device.CPU
    assert sample.memory_bytes > 10 * 1024**2 and sample.utilization_pct >= 0


REPLICA_SECRET = "replica-credential-for-the-stand-in"


def scrape(client, token: str | None = None):
    """GET /metrics as Prometheus does: with the scrape token (settings.METRICS_TOKEN unless given)."""
    from django.conf import settings

    return client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN if token is None else token}")


class _ReplicaMetrics(BaseHTTPRequestHandler):
    registry: CollectorRegistry

    def do_GET(self):
        if self.headers.get("Authorization") != f"Bearer {REPLICA_SECRET}":  # as a sealed replica
            self.send_response(401)
            self.end_headers()
            return
        body = generate_latest(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def replica_metrics_server():
    """Stand-in for an engine replica's GET /metrics (a real HTTP server with a real prometheus registry), which
    answers only a caller with the replica's credential."""
    servers = []

    def start(tokens: float):
        registry = CollectorRegistry()
        Counter("appliance_engine_generation_tokens", "tokens", registry=registry).inc(tokens)
        handler = type("H", (_ReplicaMetrics,), {"registry": registry})
        server = HTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()


def test_metrics_endpoint_exports_occupancy_and_relabelled_engine_metrics(client, node, replica_metrics_server):
    a = make_replica(node, "model-a", [0], port=replica_metrics_server(5), secret=REPLICA_SECRET)
    b = make_replica(node, "model-b", [1], port=replica_metrics_server(7), cold_start_s=3.5, secret=REPLICA_SECRET)
    services.record_neuron_report(node, parse_report(report(runtime(1, "a", {0: 30.0, 1: 80.0}, {0: 10, 1: 20}))))
    response = scrape(client)
    assert response.status_code == 200
    found = families(response.content.decode())
    ours = {"model-a", "model-b"}
    util = {s.labels["deployment"]: s.value for s in found["appliance_core_utilization_percent"].samples
            if s.labels["deployment"] in ours}
    assert util == {"model-a": 30.0, "model-b": 80.0}
    tokens = {
        s.labels["deployment"]: (s.labels["replica"], s.value)
        for s in found["appliance_engine_generation_tokens"].samples
        if s.name.endswith("_total") and s.labels["deployment"] in ours
    }
    assert tokens == {"model-a": (str(a.id), 5.0), "model-b": (str(b.id), 7.0)}
    cold = {s.labels["deployment"]: s.value for s in found["appliance_replica_cold_start_seconds"].samples
            if s.labels["deployment"] in ours}
    assert cold == {"model-b": 3.5}


def test_metrics_endpoint_survives_an_unreachable_replica(client, node):
    make_replica(node, "dead", [0], port=1)  # nothing listens on port 1
    response = scrape(client)
    assert response.status_code == 200
    assert "appliance_replica_ready" in response.content.decode()


def test_metrics_endpoint_refuses_a_scraper_without_the_token(client, node):
    make_replica(node, "tenant-visible-model", [0], port=1)
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong-token"}, {"HTTP_AUTHORIZATION": "Basic dGVzdA=="}):
        response = client.get("/metrics", **headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_metrics_token"
        assert "tenant-visible-model" not in response.content.decode()
    response = scrape(client)
    assert response.status_code == 200 and "tenant-visible-model" in response.content.decode()
