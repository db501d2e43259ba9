"""Test settings: the real PostgreSQL and Redis on the machine, never mocks of them.

APPLIANCE_TEST_DB and APPLIANCE_TEST_REDIS_DB let several test runs share one machine without colliding.
"""
import os

os.environ.setdefault(
    "DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{os.environ.get('APPLIANCE_TEST_DB', 'appliance')}"
)
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{os.environ.get('APPLIANCE_TEST_REDIS_DB', '15')}")
# Fixed secrets, so tests (and the processes they start, which inherit them) are deterministic and write no secrets
# file; public values, so development mode.
os.environ.setdefault("APPLIANCE_ENV", "development")
os.environ.setdefault("SECRET_KEY", "test-secret-key")
os.environ.setdefault("API_KEY_HMAC_SECRET", "test-api-key-hmac-secret")
os.environ.setdefault("APPLIANCE_METRICS_TOKEN", "test-metrics-token")

from .settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
