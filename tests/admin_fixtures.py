"""Fixtures shared by the control-plane tests (tenancy, catalog, console): users, API clients, a model."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

PASSWORD = "correct-horse-battery"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("admin", password=PASSWORD, is_staff=True, is_superuser=True)


@pytest.fixture
def regular_user(django_user_model):
    return django_user_model.objects.create_user("bob", password=PASSWORD)


@pytest.fixture
def anon_api() -> APIClient:
    return APIClient()


@pytest.fixture
def staff_api(staff) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff)
    return client


@pytest.fixture
def catalog_model(db):
    from appliance.catalog.models import Model, ModelVersion

    model = Model.objects.create(name="tiny-llama", architecture="LlamaForCausalLM", family="llama")
    ModelVersion.objects.create(model=model, version=1, source_uri="/nowhere", context_length=512)
    return model


@pytest.fixture
def other_model(db):
    from appliance.catalog.models import Model, ModelVersion

    model = Model.objects.create(name="other-model", architecture="Qwen2ForCausalLM", family="qwen2")
    ModelVersion.objects.create(model=model, version=1, source_uri="/nowhere", context_length=512)
    return model
