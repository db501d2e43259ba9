"""Rows for the fault suite's private database, made by a subprocess (the test process's own Django connection
belongs to the shared test database): `python -m tests.faults.seed '<json>'` prints the result as JSON.

Ops: {"op": "migrate"}; {"op": "serve", "model": name, "path": checkpoint, "replicas": n, "cold": bool} -> the
deployment id; {"op": "compile", "model": name} -> the job's outcome; {"op": "key", "models": [...], "quotas": {...}} -> {"key", "tenant_id", "key_id"}.
"""
from __future__ import annotations

import json
import os
import sys
import uuid


def main(spec: dict) -> dict:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings_test")
    django.setup()
    from django.core.management import call_command

    if spec["op"] == "migrate":
        call_command("migrate", verbosity=0)
        return {}
    if spec["op"] == "serve":
        from appliance.catalog.models import Model, ModelVersion
        from appliance.lifecycle.services import deploy

        model, _ = Model.objects.get_or_create(name=spec["model"], defaults={"architecture": "LlamaForCausalLM"})
        ModelVersion.objects.create(model=model, version=1, source_uri=spec["path"], dtype="float32")
        dep = deploy(spec["model"], replicas=spec.get("replicas", 1), compile=False).deployment
        return {"deployment_id": dep.id}
    if spec["op"] == "compile":  # the compile job's own code, run here rather than on a Celery worker
        from appliance.catalog.models import ModelVersion
        from appliance.lifecycle.compile_runner import run_compile_job
        from appliance.lifecycle.models import CompileJob
        from appliance.lifecycle.services import request_compile

        job = request_compile(ModelVersion.objects.get(model__name=spec["model"]), "cpu", dtype="bfloat16")
        outcome = run_compile_job(job.pk)
        job = CompileJob.objects.get(pk=job.pk)
        return {"outcome": outcome, "status": job.status, "error": job.error, "artifact": job.artifact_id}
    if spec["op"] == "key":
        from appliance.tenancy.services import create_api_key, create_tenant

        tenant = create_tenant(f"faults-{uuid.uuid4().hex[:8]}", models=spec["models"], **spec.get("quotas", {}))
        key, plaintext = create_api_key(tenant)
        return {"key": plaintext, "tenant_id": tenant.id, "key_id": key.id}
    raise ValueError(f"unknown op {spec['op']!r}")


if __name__ == "__main__":
    print("SEED " + json.dumps(main(json.loads(sys.argv[1]))))
