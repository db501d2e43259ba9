"""The installation's own secrets (appliance/secret_store.py via appliance/settings.py), as a fresh installation
starts: real processes importing the real settings, each with its own temporary APPLIANCE_HOME."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from appliance.secret_store import NAMES, PUBLIC_VALUES

ROOT = Path(__file__).resolve().parents[1]
PRINT_SECRETS = ("import json, django; django.setup(); from django.conf import settings as s; "
                 "print(json.dumps([s.SECRET_KEY, s.API_KEY_HMAC_SECRET, s.METRICS_TOKEN]))")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh installation: none of the secrets, production mode, the real settings."""
    drop = {*NAMES, "APPLIANCE_ENV", "APPLIANCE_SECRETS_FILE", "DJANGO_SETTINGS_MODULE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "APPLIANCE_HOME": str(home), "DJANGO_SETTINGS_MODULE": "appliance.settings", **extra}


def start(home: Path, **extra: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PRINT_SECRETS], cwd=ROOT, env=clean_env(home, **extra),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_two_fresh_installations_make_different_private_secrets_and_reuse_them(tmp_path):
    first, second = start(tmp_path / "a"), start(tmp_path / "b")
    assert len(set(first + second)) == 6  # all different, across and within installations
    for value in first + second:
        assert value not in PUBLIC_VALUES and len(value) >= 32
    for home in ("a", "b"):
        path = tmp_path / home / "secrets.env"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mine = "an-operator-chosen-secret-key-of-sufficient-length"
    assert start(tmp_path / "a", SECRET_KEY=mine) == [mine, *first[1:]]  # an explicit value wins
    assert start(tmp_path / "a") == first  # the next start reuses the stored ones


def test_processes_starting_together_agree_on_one_set(tmp_path):
    with ThreadPoolExecutor(4) as pool:
        seen = list(pool.map(lambda _: start(tmp_path), range(4)))
    assert all(s == seen[0] for s in seen)
    assert (tmp_path / "secrets.env").read_text().count("SECRET_KEY=") == 1


def test_the_secrets_file_location_follows_appliance_secrets_file(tmp_path):
    elsewhere = tmp_path / "etc" / "secrets.env"
    values = start(tmp_path / "home", APPLIANCE_SECRETS_FILE=str(elsewhere))
    assert f"APPLIANCE_METRICS_TOKEN={values[2]}\n" in elsewhere.read_text()
    assert not (tmp_path / "home" / "secrets.env").exists()


def test_production_refuses_to_start_with_a_public_secret(tmp_path):
    public = {"SECRET_KEY": "insecure-dev-key-change-me-in-production", "APPLIANCE_METRICS_TOKEN": "short"}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                          env=clean_env(tmp_path, **public), timeout=120)
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert "refusing to start in production mode" in message
    assert "SECRET_KEY is a public default value" in message
    assert "APPLIANCE_METRICS_TOKEN is shorter than 32 characters" in message
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                          env=clean_env(tmp_path, **public, APPLIANCE_ENV="development"), timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]  # a development machine may
