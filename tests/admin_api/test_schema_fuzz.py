"""schemathesis against the admin API's published schema (/api/schema/), in process over WSGI, as a staff user.

Every operation gets APPLIANCE_FUZZ_EXAMPLES generated requests (schema-valid and schema-violating ones) and each answer
goes through schemathesis' checks: no server error, the status code and body documented by the schema, schema-
violating input refused, schema-valid input accepted (see `schema_valid_input_accepted`), auth enforced.

The requests write to the test database (created for this run and dropped after it), seeded once with one row of
every kind so that lists and details have real objects to show. Each operation's requests run in a transaction rolled
back after it (pytest-django's `db`), so every operation starts from the seed; the module flushes the seed when done.
"""
from __future__ import annotations

import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import Failure
from schemathesis.generation import GenerationMode

from tests.admin_api.seed import seed_one_of_everything
from tests.conftest import flush_database

pytestmark = pytest.mark.django_db

MAX_EXAMPLES = int(os.environ.get("APPLIANCE_FUZZ_EXAMPLES", "15"))

# A schema-valid request may still be refused for a reason that depends on the database's state or on two fields
# together, which no schema can express: a referenced object that does not exist, a name already taken, a checkpoint
# path that is not a checkpoint, an expiry already past, min_replicas above max_replicas, a guardrail policy that
# names both a tenant and a deployment or neither, a content filter that does not import. DRF also reads "" for a
# related object's name as no object ("may not be null": a schema-valid request cannot send null where the schema
# does not allow it). Any other 400 to a schema-valid request is a failure.
STATE_REASONS = re.compile(
    r"does not exist|already exists|must make a unique set|not a directory|no config\.json|no weight files|"
    r"no tokenizer files|cannot read|Must be in the future|That choice is not one of the available choices|"
    r"Not allowed for tenant|Belongs to another model version|already (finished|cancelled)|no replica|"
    r"only local directories|This field may not be null|Must be at least min_replicas|"
    r"exactly one tenant or one deployment|content filter"
)


def _messages(body) -> list[str]:
    if isinstance(body, dict):
        return [m for value in body.values() for m in _messages(value)]
    if isinstance(body, list):
        return [m for value in body for m in _messages(value)]
    return [str(body)]


@schemathesis.check
def schema_valid_input_accepted(ctx, response, case) -> bool | None:
    """schemathesis' positive_data_acceptance, except for refusals that depend on the database's state."""
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE or response.status_code != 400:
        return None
    messages = _messages(response.json())
    if messages and all(STATE_REASONS.search(m) for m in messages):
        return None
    raise Failure(operation=case.operation.label, title="Schema-valid request rejected",
                  message=f"400 to a schema-valid request: {response.text[:500]}")


@pytest.fixture(scope="module")
def staff_token(django_db_setup, django_db_blocker) -> str:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from django.core import signals
    from django.db import close_old_connections

    # As Django's test client does: a request must not close the connection that holds the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    with django_db_blocker.unblock():
        staff = get_user_model().objects.create_user("fuzz", password="x", is_staff=True, is_superuser=True)
        seed_one_of_everything(staff)
        token = Token.objects.create(user=staff).key
    yield token
    flush_database(django_db_blocker)
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def load_admin_schema() -> schemathesis.BaseSchema:
    """The schema /api/schema/ serves (drf-spectacular's generator, no request needed), calling the WSGI app."""
    from django.core.wsgi import get_wsgi_application
    from drf_spectacular.generators import SchemaGenerator

    loaded = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    loaded.app = get_wsgi_application()
    loaded.config.generation.update(modes=list(GenerationMode), max_examples=MAX_EXAMPLES)
    return loaded


schema = load_admin_schema()


@schema.parametrize()
@settings(deadline=None, database=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_admin_api_keeps_its_schema(case, staff_token):
    case.call_and_validate(headers={"Authorization": f"Token {staff_token}"},
                           excluded_checks=[positive_data_acceptance],
                           additional_checks=[schema_valid_input_accepted])


def test_the_fuzzed_schema_is_the_served_one(staff_api):
    served = staff_api.get("/api/schema/?format=json")
    assert served.status_code == 200
    assert served.json()["paths"] == schema.raw_schema["paths"]
    assert len(schema.raw_schema["paths"]) >= 30
