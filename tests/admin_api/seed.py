"""One row of every kind the admin API lists, so that lists and details have real objects to show."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone


def seed_one_of_everything(staff) -> None:
    from appliance.catalog.models import Artifact, Deployment, Model, ModelVersion, Node, Pool, Replica
    from appliance.capacity.models import BenchmarkRun, InstancePrice
    from appliance.guardrails.models import GuardrailPolicy
    from appliance.lifecycle.models import CompileJob
    from appliance.telemetry.models import OccupancySample, ProfileJob
    from appliance.tenancy.models import UsageRecord, UsageRollup
    from appliance.tenancy.services import create_api_key, create_tenant

    tenant = create_tenant("acme", actor=staff)
    key, _ = create_api_key(tenant, name="ci", actor=staff)
    model = Model.objects.create(name="tiny-llama", architecture="LlamaForCausalLM", family="llama")
    version = ModelVersion.objects.create(model=model, version=1, source_uri="/nowhere", context_length=512)
    artifact = Artifact.objects.create(digest="0" * 64, model_version=version, target="cpu", uri="/nowhere")
    node = Node.objects.create(name="n1")
    pool = Pool.objects.create(name="p1", node=node, cores=2)
    deployment = Deployment.objects.create(name="tiny-llama", model_version=version, artifact=artifact, pool=pool)
    replica = Replica.objects.create(deployment=deployment, node=node)
    CompileJob.objects.create(model_version=version)
    UsageRecord.objects.create(tenant=tenant, api_key=key, model_name="tiny-llama", request_id="r1",
                               endpoint="chat.completions")
    UsageRollup.objects.create(tenant=tenant, model_name="tiny-llama",
                               period_start=timezone.now() - timedelta(hours=1))
    OccupancySample.objects.create(node=node, replica=replica, device="cpu", utilization_pct=1.0)
    ProfileJob.objects.create(replica=replica)
    GuardrailPolicy.objects.create(tenant=tenant, deny_terms=["forbidden"])
    InstancePrice.objects.get_or_create(instance_type="inf2.xlarge", defaults={"hourly_usd": "0.7582"})
    BenchmarkRun.objects.create(deployment=deployment, concurrency_levels=[1])
