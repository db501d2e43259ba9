"""python manage.py create_tenant NAME [--rpm N] [--tpm N] [--max-concurrency N] [--max-queue-wait SECONDS]
[--monthly-tokens N] [--models a,b]

Creates the tenant and a first API key, and prints the key alone on the last line of output. Without --models the
tenant may call every model, including models registered later (Tenant.all_models).
"""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from appliance.tenancy.services import create_api_key, create_tenant


def non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def non_negative_seconds(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Create a tenant with quotas and print its first API key on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Tenant name (letters, digits, '-' and '_')")
        parser.add_argument("--display-name", default="")
        parser.add_argument("--rpm", type=non_negative, help="Requests per minute (default: unlimited)")
        parser.add_argument("--tpm", type=non_negative, help="Tokens per minute (default: unlimited)")
        parser.add_argument("--max-concurrency", type=non_negative, help="Requests in flight (default: unlimited)")
        parser.add_argument("--max-queue-wait", type=non_negative_seconds, default=0.0, metavar="SECONDS",
                            help="At --max-concurrency, a request waits up to SECONDS for a slot (FIFO) before a "
                                 "429 (default: 0, a 429 at once)")
        parser.add_argument("--monthly-tokens", type=non_negative, help="Token budget per month (default: unlimited)")
        parser.add_argument(
            "--models", help="Comma-separated model names it may call (default: all models, present and future)"
        )
        parser.add_argument("--key-name", default="default", help="Name of the first API key")

    def handle(self, *args, **opts) -> None:
        models = None if opts["models"] is None else [m for m in opts["models"].split(",") if m.strip()]
        quotas = {f: opts[f] for f in ("rpm", "tpm", "max_concurrency", "monthly_tokens")}
        try:
            with transaction.atomic():
                tenant = create_tenant(opts["name"], display_name=opts["display_name"], models=models,
                                       max_queue_wait_s=opts["max_queue_wait"], **quotas)
                key, plaintext = create_api_key(tenant, name=opts["key_name"])
        except (ValueError, ValidationError) as exc:
            raise CommandError(_message(exc)) from None
        allowed = "all models" if tenant.all_models else ", ".join(m.name for m in tenant.allowed_models.all())
        limits = ", ".join(f"{k}={v}" for k, v in quotas.items() if v is not None) or "unlimited"
        if tenant.max_queue_wait_s:
            limits += f"; waits up to {tenant.max_queue_wait_s:g}s for a slot"
        self.stdout.write(f"Created tenant {tenant.name} (models: {allowed or 'none'}; quotas: {limits}).")
        self.stdout.write(f"API key {key.prefix} (shown once, store it now):")
        self.stdout.write(plaintext)


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and hasattr(exc, "message_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return str(exc.messages[0] if isinstance(exc, ValidationError) else exc)
