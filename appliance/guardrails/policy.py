"""A guardrail policy as the gateway holds it: plain settings plus its content filter, built once when the policy
is loaded (with the tenant's callers, or the deployment's route) and reused by every request."""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from django.utils.module_loading import import_string

from .filters import BLOCK, REDACT, BuiltinFilter, ContentFilter
from .models import PII_KINDS

ENTRY_POINT_GROUP = "appliance.content_filters"


class PolicyError(ValueError):
    """The policy cannot be used; the message says why."""


@dataclass(frozen=True)
class PolicySpec:
    owner: str  # "tenant acme", "deployment chat"
    filter_name: str  # "" for the built-in filter
    check_input: bool
    check_output: bool
    deny_terms: tuple[str, ...]
    deny_action: str
    pii: tuple[str, ...]
    pii_action: str
    max_prompt_tokens: int | None
    max_tokens: int | None


@dataclass(frozen=True)
class Policy:
    spec: PolicySpec
    filter: ContentFilter | None  # None: the policy could not be built (error says why); its requests fail closed
    error: str = ""

    @property
    def filters_input(self) -> bool:
        return self.spec.check_input

    @property
    def filters_output(self) -> bool:
        return self.spec.check_output


def load_filter(name: str, spec: PolicySpec) -> ContentFilter:
    """The content filter `name` names (empty: the built-in one), built for `spec`."""
    if not name:
        return BuiltinFilter.from_policy(spec)
    if "." in name or ":" in name:
        try:
            factory = import_string(name.replace(":", "."))
        except ImportError as exc:
            raise PolicyError(f"content filter {name!r} cannot be imported: {exc}") from None
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            raise PolicyError(f"no content filter named {name!r} (entry point group {ENTRY_POINT_GROUP})")
        factory = found[0].load()
    try:
        made = factory(spec)
    except Exception as exc:  # noqa: BLE001 - a plug-in's error, reported as the policy's
        raise PolicyError(f"content filter {name!r} failed to start: {exc}") from None
    if not callable(getattr(made, "scan", None)):
        raise PolicyError(f"content filter {name!r} has no scan(text, stage) method")
    return made


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{what} must be a list of strings")
    return tuple(value)


def compile_policy(row) -> Policy:
    """The Policy for a GuardrailPolicy row; PolicyError if it is not usable."""
    pii = _strings(row.pii, "pii")
    unknown = sorted(set(pii) - set(PII_KINDS))
    if unknown:
        raise PolicyError(f"unknown PII kind(s) {', '.join(unknown)}; known: {', '.join(PII_KINDS)}")
    for field in ("deny_action", "pii_action"):
        if getattr(row, field) not in (BLOCK, REDACT):
            raise PolicyError(f"{field} must be {BLOCK!r} or {REDACT!r}")
    owner = f"tenant {row.tenant.name}" if row.tenant_id else f"deployment {row.deployment.name}"
    spec = PolicySpec(owner, row.filter.strip(), row.check_input, row.check_output,
                      _strings(row.deny_terms, "deny_terms"), row.deny_action, pii, row.pii_action,
                      row.max_prompt_tokens, row.max_tokens)
    return Policy(spec, load_filter(spec.filter_name, spec))


def _load(**owner) -> Policy | None:
    from .models import GuardrailPolicy

    row = GuardrailPolicy.objects.select_related("tenant", "deployment").filter(**owner).first()
    if row is None:
        return None
    try:
        return compile_policy(row)
    except PolicyError as exc:
        spec = PolicySpec(str(row), "", True, True, (), BLOCK, (), REDACT, row.max_prompt_tokens, row.max_tokens)
        return Policy(spec, None, str(exc))


def tenant_policy(tenant_id: int) -> Policy | None:
    """The tenant's policy (a database read: called when the gateway loads a caller, not per request)."""
    return _load(tenant_id=tenant_id)


def deployment_policy(deployment_id: int) -> Policy | None:
    """The deployment's policy (read when the gateway loads its route)."""
    return _load(deployment_id=deployment_id)
