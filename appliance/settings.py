"""Settings for the control plane, read from the environment.

Embedded defaults make a laptop demo work with no servers: SQLite under APPLIANCE_HOME, and no Redis
(quota counters fall back to the database-free local backend, Celery to an in-process filesystem broker).
Production sets DATABASE_URL (PostgreSQL) and REDIS_URL. Secrets are the installation's own (secret_store.py).
"""
from pathlib import Path
import json
import os

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from appliance import secret_store

BASE_DIR = Path(__file__).resolve().parent.parent
APPLIANCE_HOME = Path(os.environ.get("APPLIANCE_HOME", BASE_DIR / "var")).resolve()


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.lower() in {"1", "true", "yes", "on"}


# production (the default, and the AMI's) or development: production refuses to start with a public secret.
APPLIANCE_ENV = os.environ.get("APPLIANCE_ENV", "production").strip().lower()
if APPLIANCE_ENV not in {"production", "development"}:
    raise ImproperlyConfigured(f"APPLIANCE_ENV must be production or development, not {APPLIANCE_ENV!r}")
# The installation's own secrets (secret_store.py): the environment, else this file, else made now and kept there.
# The AMI points this at /etc/appliance/secrets.env, which its first boot writes.
SECRETS_FILE = Path(os.environ.get("APPLIANCE_SECRETS_FILE") or APPLIANCE_HOME / "secrets.env")
try:
    _SECRETS = secret_store.resolve(SECRETS_FILE, os.environ)
    if APPLIANCE_ENV == "production":
        secret_store.check_production(_SECRETS)
except secret_store.SecretsError as _exc:
    raise ImproperlyConfigured(str(_exc)) from None
SECRET_KEY = _SECRETS.values["SECRET_KEY"]
# Separate key for API-key digests so rotating the session secret does not invalidate tenants' keys.
API_KEY_HMAC_SECRET = _SECRETS.values["API_KEY_HMAC_SECRET"]
# The bearer token /metrics asks for (docs/metrics.md); `manage.py serve` prints it.
METRICS_TOKEN = _SECRETS.values["APPLIANCE_METRICS_TOKEN"]
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "*").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "appliance.tenancy",
    "appliance.catalog",
    "appliance.gateway",
    "appliance.lifecycle",
    "appliance.jobs",
    "appliance.telemetry",
    "appliance.guardrails",
    "appliance.capacity",
    "appliance.console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "appliance.urls"
ASGI_APPLICATION = "appliance.asgi.application"
WSGI_APPLICATION = "appliance.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "webui" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "appliance.console.staff.roles",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{APPLIANCE_HOME / 'appliance.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: quota counters, routing state, Celery broker. Empty means the server-less laptop defaults.
REDIS_URL = os.environ.get("REDIS_URL", "")

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {}
    if REDIS_URL or os.environ.get("CELERY_BROKER_URL")
    else {
        "data_folder_in": str(APPLIANCE_HOME / "broker"),
        "data_folder_out": str(APPLIANCE_HOME / "broker"),
        "processed_folder": str(APPLIANCE_HOME / "broker-processed"),
        "control_folder": str(APPLIANCE_HOME / "broker-control"),
    }
)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# A worker started without -Q consumes every queue listed here; batches have their own queue so a deployment can
# give them their own workers (celery worker -Q batch) and keep them off the compile/async workers.
from kombu import Queue  # noqa: E402

# Explicit routing keys: left out, Celery binds every queue to the default exchange with the key "default".
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in ("default", "compile", "batch")]
CELERY_TASK_ROUTES = {"jobs.run_batch": {"queue": "batch"}}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "webui" / "static"]
STATIC_ROOT = APPLIANCE_HOME / "static"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["appliance.roles.StaffPermission"],
    "EXCEPTION_HANDLER": "appliance.api_base.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # JSON in, as the schema says: one request encoding for clients and for the fuzz tests (tests/admin_api).
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_PAGINATION_CLASS": "appliance.api_filters.Pagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Inferentia serving appliance — admin API",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get their own components (FooRequest), so what a write requires (e.g. minLength 1) is stated.
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],
    "ENUM_NAME_OVERRIDES": {"DeviceEnum": "appliance.catalog.models.Device",
                            "GuardrailActionEnum": "appliance.guardrails.models.GuardrailPolicy.Action",
                            "BenchmarkStatusEnum": "appliance.capacity.models.BenchmarkRun.Status"},
    # Every operation documents the errors it can answer (400/401/403/404/409); appliance/api_schema.py.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "appliance.api_schema.document_errors",
    ],
    # Swagger UI from local static files (the appliance may have no internet access).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:dashboard"

# Hourly price per instance type for the console's costs (appliance/console/prices.py has the list prices), as a
# JSON object: {"inf2.xlarge": 0.76, "default": 0.1}.
INSTANCE_HOURLY_PRICES = json.loads(os.environ.get("INSTANCE_HOURLY_PRICES", "{}"))

# Where model artifacts (compiled or converted) are stored, content-addressed: a directory (shared by every node of
# a fleet, e.g. NFS/EFS) or s3://bucket/prefix.
ARTIFACT_STORE_URL = os.environ.get("ARTIFACT_STORE_URL", str(APPLIANCE_HOME / "artifacts"))
# This node's cache of the artifacts its replicas load (empty: APPLIANCE_HOME/artifact-cache), and its size cap in
# bytes (least recently used entries no live replica uses are evicted beyond it; 0: no cap).
ARTIFACT_CACHE_DIR = os.environ.get("ARTIFACT_CACHE_DIR", "")
ARTIFACT_CACHE_MAX_BYTES = int(os.environ.get("ARTIFACT_CACHE_MAX_BYTES", str(100 * 2**30)))
# Where engine replicas write logs and sockets.
RUN_DIR = Path(os.environ.get("APPLIANCE_RUN_DIR", APPLIANCE_HOME / "run"))
# This node's name (one node agent per machine) and the address other nodes reach it at: its replicas listen there
# (behind their per-launch credential, Replica.secret), and a gateway on any node routes to them (docs/fleet.md).
NODE_NAME = os.environ.get("NODE_NAME", os.uname().nodename)
NODE_ADDRESS = os.environ.get("NODE_ADDRESS", "127.0.0.1")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Periodic work on celery beat (each app's beat.py).
from appliance.lifecycle.beat import BEAT_SCHEDULE as _LIFECYCLE_BEAT  # noqa: E402
from appliance.tenancy.beat import BEAT_SCHEDULE as _TENANCY_BEAT  # noqa: E402

CELERY_BEAT_SCHEDULE = {**_LIFECYCLE_BEAT, **_TENANCY_BEAT}
