"""Nodes of a fleet over real database rows (no processes): a silent node becomes lost and its replicas are placed
again elsewhere, a lost node that heartbeats again is ready and its old replicas count for nothing, and a draining
node's replicas start elsewhere before they stop there (drain_node and the admin API's drain/undrain)."""
from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from appliance.catalog.models import Deployment, Node, Replica
from appliance.lifecycle import node_state, placement
from tests.admin_fixtures import staff, staff_api  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(register_version, tiny_llama):
    return register_version("tiny", tiny_llama)


def node(name: str, cores: int = 2, silent_s: float = 0.0, **fields) -> Node:
    return Node.objects.create(name=name, cores=cores, last_heartbeat=timezone.now() - timedelta(seconds=silent_s),
                               address=f"10.0.0.{Node.objects.count() + 2}", **fields)


def two_replica_deployment(version, name: str = "spread") -> Deployment:
    dep = Deployment.objects.create(name=name, model_version=version, desired_replicas=2, min_replicas=2,
                                    max_replicas=2)
    placement.place(dep.pk)
    dep.replicas.update(state=Replica.State.READY, port=9000)
    return dep


def placed(dep: Deployment) -> list[tuple[str, str]]:
    return sorted(dep.replicas.exclude(state=Replica.State.STOPPED).values_list("node__name", "state"))


def test_two_replicas_land_one_on_each_node_at_the_nodes_address(version):
    node("a")
    node("b", cores=4)
    dep = two_replica_deployment(version)
    assert placed(dep) == [("a", "ready"), ("b", "ready")]
    assert {r.node.address for r in dep.replicas.all()} == {r.host for r in dep.replicas.all()}
    assert "127.0.0.1" not in {r.host for r in dep.replicas.all()}


def test_a_silent_node_becomes_lost_and_its_replica_is_placed_again_where_cores_allow(version, monkeypatch):
    monkeypatch.setenv("APPLIANCE_NODE_LOST_AFTER_S", "5")
    a, b = node("a"), node("b", cores=1)
    dep = two_replica_deployment(version)
    Node.objects.filter(pk=a.pk).update(last_heartbeat=timezone.now() - timedelta(seconds=6))
    placement.place_all()
    a.refresh_from_db()
    assert a.state == "lost"
    old = dep.replicas.get(node=a)
    assert old.state == "stopped" and "node a stopped heartbeating" in old.last_error
    dep.refresh_from_db()  # b has no free core: the replica waits, and says why
    assert placed(dep) == [("b", "ready")]
    assert dep.status == "waiting" and "1 of 2 replicas placed" in dep.status_message
    Node.objects.filter(pk=b.pk).update(cores=2)
    placement.place_all()
    assert placed(dep) == [("b", "pending"), ("b", "ready")]


def test_a_lost_node_that_heartbeats_again_is_ready_and_its_old_replicas_are_not_counted(version, monkeypatch):
    monkeypatch.setenv("APPLIANCE_NODE_LOST_AFTER_S", "5")
    a, _ = node("a"), node("b", cores=4)
    dep = two_replica_deployment(version)
    Node.objects.filter(pk=a.pk).update(last_heartbeat=timezone.now() - timedelta(seconds=6))
    placement.place_all()
    assert placed(dep) == [("b", "pending"), ("b", "ready")]
    assert node_state.heartbeat(a.pk) is True
    a.refresh_from_db()
    assert a.state == "ready" and placement.used_cores(a) == set()  # its stopped rows hold no core
    placement.place_all()
    assert placed(dep) == [("b", "pending"), ("b", "ready")]  # still two replicas, not three
    assert node_state.heartbeat(a.pk) is False


def test_draining_starts_a_replacement_elsewhere_before_stopping_the_replica(version):
    a, b = node("a"), node("b", cores=4)
    dep = two_replica_deployment(version)
    node_state.set_draining("a", True)
    placement.place(dep.pk)
    assert placed(dep) == [("a", "ready"), ("b", "pending"), ("b", "ready")]  # a's still serves meanwhile
    dep.replicas.filter(node=b, state=Replica.State.PENDING).update(state=Replica.State.READY)
    placement.place(dep.pk)
    assert placed(dep) == [("a", "draining"), ("b", "ready"), ("b", "ready")]
    assert "moved off draining node a" in dep.replicas.get(node=a).last_error
    other = Deployment.objects.create(name="new", model_version=version, desired_replicas=1)
    placement.place(other.pk)
    assert other.replicas.get().node == b  # nothing new on a draining node, though a has more free cores
    assert node_state.set_draining("a", False).state == "ready"


def test_drain_node_command_reports_the_node_and_refuses_unknown_or_lost_ones(version):
    node("a")
    node("gone", silent_s=600, state=Node.State.LOST)
    out = io.StringIO()
    call_command("drain_node", "a", stdout=out)
    assert "node a: draining, 0 replica(s) on it" in out.getvalue()
    call_command("drain_node", "a", "--undo", stdout=out)
    assert Node.objects.get(name="a").state == "ready"
    with pytest.raises(CommandError, match=r"no node called 'nope' \(nodes: a, gone\)"):
        call_command("drain_node", "nope")
    with pytest.raises(CommandError, match="node gone is lost"):
        call_command("drain_node", "gone")


def test_drain_and_undrain_through_the_admin_api(staff_api, version):  # noqa: F811 - fixture
    a = node("a")
    lost = node("gone", silent_s=600, state=Node.State.LOST)
    response = staff_api.post(f"/api/catalog/nodes/{a.pk}/drain/")
    assert response.status_code == 200 and response.json()["state"] == "draining"
    assert staff_api.get("/api/catalog/nodes/?state=draining").json()["results"][0]["name"] == "a"
    response = staff_api.post(f"/api/catalog/nodes/{a.pk}/undrain/")
    assert response.status_code == 200 and response.json()["state"] == "ready"
    response = staff_api.post(f"/api/catalog/nodes/{lost.pk}/drain/")
    assert response.status_code == 409 and "is lost" in response.json()["detail"]
    response = staff_api.patch(f"/api/catalog/nodes/{a.pk}/", {"state": "lost"}, format="json")
    assert Node.objects.get(pk=a.pk).state == "ready"  # state is not written directly
