"""Jobs fixtures. The task code runs ORM work on the gateway's DB threads (appliance.gateway.db), whose connections
persist: close them before the test database is dropped."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def closes_gateway_connections(django_db_setup):
    yield
    from appliance.gateway.db import close_connections

    close_connections()
