import pytest

from appliance.catalog.models import Deployment, Node, Replica

pytestmark = pytest.mark.django_db


def test_deployment_crud_and_replica_state(staff_api, catalog_model):
    version = catalog_model.versions.get()
    created = staff_api.post("/api/catalog/deployments/", {
        "name": "llama-chat", "model_version": version.pk, "min_replicas": 0, "max_replicas": 2,
    }, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["model"] == "tiny-llama" and body["status"] == "pending" and body["ready_replicas"] == 0
    node = Node.objects.create(name="n1")
    Replica.objects.create(deployment_id=body["id"], node=node, state=Replica.State.READY, port=9000)
    detail = staff_api.get(f"/api/catalog/deployments/{body['id']}/").json()
    assert detail["ready_replicas"] == 1
    replicas = staff_api.get("/api/catalog/replicas/", {"deployment__name": "llama-chat"}).json()["results"]
    assert replicas[0]["node"] == "n1" and replicas[0]["state"] == "ready"
    assert staff_api.post("/api/catalog/replicas/", {}, format="json").status_code == 405
    status = staff_api.patch(f"/api/catalog/deployments/{body['id']}/", {"status": "running"}, format="json")
    assert status.status_code == 200 and status.json()["status"] == "pending"


@pytest.mark.parametrize("payload, field", [
    ({"name": "x", "model_version": 999999}, "model_version"),
    ({"name": "bad name", "model_version": None}, "name"),
    ({"name": "x", "min_replicas": 3, "max_replicas": 1}, "max_replicas"),
    ({"name": "x", "cores_per_replica": 0}, "cores_per_replica"),
    ({"name": "x", "device": "tpu"}, "device"),
    ({"name": "x", "pool": "no-such-pool"}, "pool"),
])
def test_deployment_validation_errors_are_400(staff_api, catalog_model, payload, field):
    payload = {"model_version": catalog_model.versions.get().pk, **payload}
    response = staff_api.post("/api/catalog/deployments/", payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Deployment.objects.exists()


def test_deleting_a_version_in_use_is_a_409_not_a_500(staff_api, catalog_model):
    version = catalog_model.versions.get()
    Deployment.objects.create(name="llama-chat", model_version=version)
    response = staff_api.delete(f"/api/catalog/model-versions/{version.pk}/")
    assert response.status_code == 409 and "llama-chat" in response.json()["detail"]
    assert catalog_model.versions.exists()
    from appliance.tenancy.models import AuditLog

    assert not AuditLog.objects.filter(action="delete").exists()


def test_duplicate_version_number_is_400(staff_api, catalog_model):
    response = staff_api.post("/api/catalog/model-versions/", {
        "model": "tiny-llama", "version": 1, "source_uri": "/x",
    }, format="json")
    assert response.status_code == 400


def test_nodes_and_pools(staff_api):
    node = staff_api.post("/api/catalog/nodes/", {"name": "inf2-a", "device": "neuron", "cores": 2}, format="json")
    assert node.status_code == 201
    pool = staff_api.post("/api/catalog/pools/", {"name": "shared", "node": "inf2-a", "cores": 2}, format="json")
    assert pool.status_code == 201 and pool.json()["node"] == "inf2-a"
    assert staff_api.get("/api/catalog/pools/", {"node__name": "inf2-a"}).json()["count"] == 1
