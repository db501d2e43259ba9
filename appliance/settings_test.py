"""Test settings: the real PostgreSQL and Redis on the machine, never mocks of them.

APPLIANCE_TEST_DB and APPLIANCE_TEST_REDIS_DB let several test runs share one machine without colliding.
"""
import os

os.environ.setdefault(
    "DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{os.environ.get('APPLIANCE_TEST_DB', 'appliance')}"
)
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{os.environ.get('APPLIANCE_TEST_REDIS_DB', '15')}")

from .settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
