"""Guardrail decisions in the audit log (appliance.tenancy's AuditLog): which request, whose, which rule, what was
done. The matched text itself is never written (it may be the very PII being kept out)."""
from __future__ import annotations

import asyncio
from collections import Counter

from .filters import Finding

_tasks: set[asyncio.Task] = set()


def _write(request_id: str, tenant_id: int, tenant_name: str, key_id: int, model: str, stage: str, action: str,
           findings: list[Finding], policies: list[str]) -> None:
    from appliance.tenancy.models import AuditLog

    counts = Counter((f.kind, f.rule, f.action) for f in findings)
    AuditLog.objects.create(
        actor=None, action=f"{stage}_{action}"[:20], object_type="gateway.request", object_id=request_id[:64],
        object_repr=f"{tenant_name} → {model}"[:300],
        changes={"tenant": tenant_name, "tenant_id": tenant_id, "api_key_id": key_id, "model": model,
                 "stage": stage, "action": action, "policies": policies,
                 "findings": [{"kind": k, "rule": r, "action": a, "count": n} for (k, r, a), n in counts.items()]})


async def record(caller, model: str, request_id: str, stage: str, action: str, findings: list[Finding],
                 policies: list[str], wait: bool = False) -> None:
    """Write one audit row, on the gateway's writer thread; without `wait`, in the background."""
    from appliance.gateway.db import run_db_write

    job = run_db_write(_write, request_id, caller.tenant_id, caller.tenant_name, caller.key_id, model, stage, action,
                       findings, policies)
    if wait:
        await job
        return
    task = asyncio.get_running_loop().create_task(job)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
