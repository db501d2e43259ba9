"""A deployment that failed answers at once with a 503 carrying the failure, and says so in /v1/models."""
from __future__ import annotations

import time

import httpx
import openai
import pytest

from .conftest import World, committed, make_deployment

pytestmark = pytest.mark.django_db

FAILURE = "compile job #7 failed: unexpected IndexError during stage validating: index out of range in self"


@pytest.fixture(scope="module")
def failed_deployment(world: World, django_db_blocker) -> str:
    from appliance.catalog.models import Deployment

    def setup():
        dep = make_deployment("tiny-broken", "tiny", world.engine.model_dir, None)
        Deployment.objects.filter(pk=dep.pk).update(status=Deployment.Status.FAILED, status_message=FAILURE)

    with django_db_blocker.unblock():
        committed(setup)
    return "tiny-broken"


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_to_a_failed_deployment_gets_its_503_in_under_a_second(world: World, failed_deployment, stream):
    client = openai.OpenAI(base_url=world.appliance.v1, api_key=world.acme_key, max_retries=0, timeout=30)
    started = time.perf_counter()
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(model=failed_deployment, messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=2, stream=stream)
    elapsed = time.perf_counter() - started
    print(f"503 after {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0
    assert exc.value.status_code == 503 and FAILURE in exc.value.message
    assert exc.value.body["code"] == "model_unavailable"


def test_v1_models_marks_the_failed_deployment(world: World, failed_deployment):
    client = openai.OpenAI(base_url=world.appliance.v1, api_key=world.acme_key, max_retries=0, timeout=30)
    models = {m.id: m for m in client.models.list()}
    assert models[failed_deployment].status == "failed"
    assert models[failed_deployment].status_message == FAILURE
    assert models[world.model].status == "running" and not hasattr(models[world.model], "status_message")
    one = httpx.get(f"{world.appliance.v1}/models/{failed_deployment}",
                    headers={"Authorization": f"Bearer {world.acme_key}"}).json()
    assert one["status"] == "failed"


def test_a_deployment_that_fails_while_a_request_waits_ends_the_wait(world: World, tmp_path):
    """The request waits for a replica (scale from zero); the deployment fails meanwhile: the 503 comes at once
    with the failure, not at the end of the cold-start wait."""
    from .conftest import start_gateway, stop_gateway

    from appliance.catalog.models import Deployment

    committed(make_deployment, "tiny-doomed", "tiny", world.engine.model_dir, None)
    gateway = start_gateway(tmp_path, GATEWAY_COLD_START_TIMEOUT_S="60")
    try:
        client = openai.OpenAI(base_url=gateway.v1, api_key=world.acme_key, max_retries=0, timeout=90)
        import threading

        def fail_soon():
            time.sleep(1.0)
            committed(lambda: Deployment.objects.filter(name="tiny-doomed").update(
                status=Deployment.Status.FAILED, status_message=FAILURE))

        threading.Thread(target=fail_soon).start()
        started = time.perf_counter()
        with pytest.raises(openai.InternalServerError) as exc:
            client.completions.create(model="tiny-doomed", prompt="hi", max_tokens=1)
        assert time.perf_counter() - started < 5 and FAILURE in exc.value.message
    finally:
        stop_gateway(gateway)
