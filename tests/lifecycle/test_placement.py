"""Placement, pool eviction and autoscaling decisions over real database rows (no processes)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from appliance.catalog.models import Deployment, Node, Pool, Replica
from appliance.lifecycle import placement
from appliance.lifecycle.autoscaler import ScaleInputs, decide
from appliance.lifecycle.routing_state import OUTSTANDING_KEY, redis_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_routing_state_from_other_tests():
    """Replica and deployment ids restart after a flush, so counters other packages left in the test Redis under the
    same ids would make an idle model look busy or recently used."""
    client = redis_client()
    for pattern in ("appliance:replica:*", "appliance:deployment:*"):
        keys = list(client.scan_iter(pattern))
        if keys:
            client.delete(*keys)
    yield


@pytest.fixture
def version(register_version, tiny_llama):
    return register_version("tiny", tiny_llama)


def live_node(**fields) -> Node:
    return Node.objects.create(last_heartbeat=timezone.now(), **fields)


def deployment(version, name, **fields) -> Deployment:
    return Deployment.objects.create(name=name, model_version=version, **fields)


def test_replicas_spread_over_nodes_by_free_cores(version):
    small = live_node(name="small", cores=2)
    big = live_node(name="big", cores=8)
    a = deployment(version, "a", cores_per_replica=2, desired_replicas=1, min_replicas=1, max_replicas=1)
    placement.place(a.pk)
    assert list(a.replicas.values_list("node__name", "cores")) == [("big", [0, 1])]  # the most free cores
    b = deployment(version, "b", cores_per_replica=2, desired_replicas=3, min_replicas=3, max_replicas=3)
    placement.place(b.pk)
    # one on each node first (small has 2 free, big 6), then the most free cores again
    assert sorted(b.replicas.values_list("node__name", "cores")) == [("big", [2, 3]), ("big", [4, 5]),
                                                                     ("small", [0, 1])]
    b.refresh_from_db()
    assert b.status == "pending" and small.replicas.count() == 1 and big.replicas.count() == 3


def test_deployment_that_does_not_fit_waits_and_says_why(version):
    live_node(name="n1", cores=2)
    d = deployment(version, "wide", cores_per_replica=4, desired_replicas=1)
    placement.place(d.pk)
    d.refresh_from_db()
    assert d.status == "waiting"
    assert "needs 4 free cpu core(s)" in d.status_message and "n1: 2 of 2 free" in d.status_message
    assert d.replicas.count() == 0
    Node.objects.create(name="silent", cores=8)  # no agent heartbeat: never placed on
    placement.place(d.pk)
    assert d.replicas.count() == 0
    Node.objects.filter(name="n1").update(cores=4)
    placement.place(d.pk)
    d.refresh_from_db()
    assert d.status == "pending" and d.replicas.count() == 1


def test_without_a_live_node_agent_the_deployment_says_to_start_one(version):
    d = deployment(version, "lonely", desired_replicas=1)
    placement.place(d.pk)
    d.refresh_from_db()
    assert d.status == "waiting" and "run_agent" in d.status_message


def test_scaling_in_drains_extra_replicas_and_zero_reads_scaled_to_zero(version):
    live_node(name="n1", cores=4)
    d = deployment(version, "pm", mode="per-model", desired_replicas=2, min_replicas=0, max_replicas=2)
    placement.place(d.pk)
    Deployment.objects.filter(pk=d.pk).update(desired_replicas=0)
    placement.place(d.pk)
    d.refresh_from_db()
    assert set(d.replicas.values_list("state", flat=True)) == {"draining"}
    assert d.status == "scaled-to-zero" and "next request" in d.status_message


def test_full_pool_evicts_least_recently_used_idle_model(version):
    node = live_node(name="n1", cores=4)
    pool = Pool.objects.create(name="p", node=node, cores=2, max_loaded_models=2)
    now = timezone.now()
    deps = [deployment(version, n, mode="shared", pool=pool, desired_replicas=1, min_replicas=0,
                       last_request_at=now - timedelta(seconds=s)) for n, s in (("a", 30), ("b", 10), ("c", 0))]
    for d in deps[:2]:
        placement.place(d.pk)
        d.replicas.update(state="ready")
    placement.place(deps[2].pk)
    a, b, c = (Deployment.objects.get(pk=d.pk) for d in deps)
    assert a.desired_replicas == 0 and set(a.replicas.values_list("state", flat=True)) == {"draining"}
    assert "evicted from pool p" in a.status_message
    placement.place(a.pk)
    assert "evicted from pool p" in Deployment.objects.get(pk=a.pk).status_message
    assert b.replicas.get().state == "ready" and c.replicas.get().cores == [0, 1]
    pool.refresh_from_db()
    assert pool.evictions == 1


def test_busy_models_are_not_evicted_and_the_newcomer_waits(version):
    node = live_node(name="n1", cores=4)
    pool = Pool.objects.create(name="p", node=node, cores=1, max_loaded_models=1)
    busy = deployment(version, "busy", mode="shared", pool=pool, desired_replicas=1)
    placement.place(busy.pk)
    replica = busy.replicas.get()
    Replica.objects.filter(pk=replica.pk).update(state="ready")
    key = OUTSTANDING_KEY.format(id=replica.pk)
    redis_client().set(key, 2)
    try:
        new = deployment(version, "new", mode="shared", pool=pool, desired_replicas=1)
        placement.place(new.pk)
        new.refresh_from_db()
        assert new.status == "waiting" and "pool p is full" in new.status_message
        assert new.replicas.count() == 0 and Pool.objects.get(pk=pool.pk).evictions == 0
    finally:
        redis_client().delete(key)


def test_dedicated_replicas_avoid_pool_cores(version):
    node = live_node(name="n1", cores=4)
    Pool.objects.create(name="p", node=node, cores=2)
    d = deployment(version, "d", cores_per_replica=2, desired_replicas=1)
    placement.place(d.pk)
    assert d.replicas.get().cores == [2, 3]


def test_outstanding_requests_over_target_scale_out_and_idle_scales_back_in(version):
    from appliance.lifecycle.autoscaler import autoscale

    live_node(name="n1", cores=4)
    d = deployment(version, "busy", desired_replicas=1, min_replicas=1, max_replicas=3,
                   target_outstanding_per_replica=4, idle_timeout_s=60, last_request_at=timezone.now())
    placement.place(d.pk)
    first = d.replicas.get()
    Replica.objects.filter(pk=first.pk).update(state="ready", ready_at=timezone.now())
    key = OUTSTANDING_KEY.format(id=first.pk)
    redis_client().set(key, 10)
    try:
        assert autoscale(Deployment.objects.get(pk=d.pk)) == 3
        assert d.replicas.filter(state="pending").count() == 2
        redis_client().set(key, 0)
        assert autoscale(Deployment.objects.get(pk=d.pk)) is None  # replicas still starting: no scale-in
        d.replicas.update(state="ready", ready_at=timezone.now() - timedelta(seconds=120))
        Deployment.objects.filter(pk=d.pk).update(last_request_at=timezone.now() - timedelta(seconds=120))
        assert autoscale(Deployment.objects.get(pk=d.pk)) == 1
        assert d.replicas.filter(state="draining").count() == 2
    finally:
        redis_client().delete(key)


def test_a_deployment_not_yet_placed_is_not_scaled_to_zero_before_its_first_replica(version):
    from appliance.lifecycle.autoscaler import autoscale

    d = deployment(version, "fresh", mode="per-model", desired_replicas=1, min_replicas=0, idle_timeout_s=1)
    assert autoscale(d) is None and Deployment.objects.get(pk=d.pk).desired_replicas == 1


@pytest.mark.parametrize("inputs,expected", [
    (ScaleInputs(1, 1, 4, outstanding=40, target_per_replica=16, idle_for_s=1, idle_timeout_s=60), 3),
    (ScaleInputs(1, 1, 2, outstanding=100, target_per_replica=16, idle_for_s=1, idle_timeout_s=60), 2),
    (ScaleInputs(3, 1, 4, outstanding=0, target_per_replica=16, idle_for_s=61, idle_timeout_s=60), 1),
    (ScaleInputs(1, 0, 1, outstanding=0, target_per_replica=16, idle_for_s=61, idle_timeout_s=60), 0),
    (ScaleInputs(1, 0, 1, outstanding=0, target_per_replica=16, idle_for_s=5, idle_timeout_s=60), 1),
    (ScaleInputs(1, 0, 1, outstanding=3, target_per_replica=16, idle_for_s=100, idle_timeout_s=60), 1),
    (ScaleInputs(0, 0, 2, outstanding=0, target_per_replica=16, idle_for_s=None, idle_timeout_s=60), 0),
    (ScaleInputs(1, 0, 1, outstanding=0, target_per_replica=16, idle_for_s=90, idle_timeout_s=60, starting=True), 1),
])
def test_autoscaler_decisions(inputs, expected):
    assert decide(inputs) == expected


def test_a_crash_looping_replica_shows_its_error_on_the_deployment(version):
    live_node(name="n1", cores=2)
    d = deployment(version, "crashy", desired_replicas=1)
    placement.place(d.pk)
    d.replicas.update(state="failed", restart_count=3, last_error="engine exited with code 1: FAILED bad weights")
    placement.place(d.pk)
    d.refresh_from_db()
    assert d.status == "pending"
    assert "failed 3 time(s): engine exited with code 1: FAILED bad weights" in d.status_message
