"""A live appliance for the benchmark tests: one engine replica process on the tiny Llama, the gateway under uvicorn,
the real PostgreSQL test database and Redis. Rows the gateway must see are committed, and flushed at the end."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.admin_fixtures import *  # noqa: F401,F403
from tests.conftest import flush_database
from tests.gateway.conftest import Appliance, Engine, committed, start_engine, start_gateway, stop_gateway

PRICE_USD = 1.25  # test.cpu, a 2-core node: a 1-core replica costs half


@dataclass
class Live:
    gateway: Appliance
    engine: Engine
    deployment: str


@pytest.fixture(scope="package")
def live(django_db_setup, django_db_blocker, tiny_llama, tmp_path_factory) -> Live:
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    logs = tmp_path_factory.mktemp("capacity-live")
    engine = start_engine(tiny_llama, logs / "engine.log")

    def setup() -> str:
        from appliance.capacity.models import InstancePrice
        from appliance.catalog.models import Deployment, Model, ModelVersion, Node, Replica

        model = Model.objects.create(name="tiny-bench", architecture="LlamaForCausalLM", family="llama")
        version = ModelVersion.objects.create(model=model, version=1, source_uri=str(tiny_llama), context_length=512)
        dep = Deployment.objects.create(name="tiny-bench", model_version=version, status=Deployment.Status.RUNNING,
                                        min_replicas=1, max_replicas=1, desired_replicas=1, cores_per_replica=1)
        node = Node.objects.create(name="bench-node", instance_type="test.cpu", cores=2)
        Replica.objects.create(deployment=dep, node=node, state=Replica.State.READY, host="127.0.0.1",
                               port=engine.port, pid=engine.process.pid, cores=[0], secret=engine.secret)
        InstancePrice.objects.create(instance_type="test.cpu", hourly_usd=PRICE_USD)
        return dep.name

    with django_db_blocker.unblock():
        name = committed(setup)
    gateway = start_gateway(logs)
    try:
        yield Live(gateway, engine, name)
    finally:
        stop_gateway(gateway)
        engine.stop()
        flush_database(django_db_blocker)
