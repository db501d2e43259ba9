"""Celery routing against the real Redis broker: a batch task lands in the batch queue only, other jobs in default,
with every queue of CELERY_TASK_QUEUES bound (as a worker started without -Q binds them)."""
import uuid

import pytest
import redis
from celery import Celery

from tests.jobs.conftest import BROKER_URL


@pytest.fixture
def routing_app():
    prefix = f"routing-test-{uuid.uuid4().hex[:8]}:"
    app = Celery("routing-test")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.broker_url = BROKER_URL
    app.conf.broker_transport_options = {"global_keyprefix": prefix}
    yield app, prefix
    client = redis.Redis.from_url(BROKER_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def test_each_task_is_delivered_to_its_own_queue_only(routing_app):
    app, prefix = routing_app
    with app.connection_for_write() as conn:
        for queue in app.amqp.queues.values():
            queue.bind(conn.default_channel).declare()
        assert set(app.amqp.queues) == {"default", "compile", "batch"}
        app.send_task("jobs.run_batch", args=["batch_x"], connection=conn)
        app.send_task("jobs.run_async_request", args=["areq_x"], connection=conn)
    client = redis.Redis.from_url(BROKER_URL)
    assert {name: client.llen(prefix + name) for name in ("default", "compile", "batch")} == {
        "default": 1, "compile": 0, "batch": 1}
