"""The replica controller: the node agent's Kubernetes mode. One pod per Replica row placed on the cluster's Node.

Replica states as it drives them: pending (placed) -> starting (Secret and pod created) -> ready (the pod's Ready
condition, from its readiness probe on the engine's /health; host = pod IP) ; a pod whose engine crashes, cannot
pull its image or is evicted -> failed (restart_count, last_error from the container status; the kubelet restarts
the container, the controller replaces an evicted pod after the agent's backoff) ; draining -> pod and Secret
deleted -> stopped. Stopping the controller leaves the pods serving: a new controller picks them up by their labels.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

from django.db import close_old_connections, connection
from django.utils import timezone
from kubernetes import client
from kubernetes.client.rest import ApiException

from appliance.catalog.models import Deployment, Node, Replica
from appliance.runtime.replica_auth import new_secret

from .. import placement, routing_state
from ..agent.node_agent import restart_delay_s
from ..services import record_cold_start
from .config import KubernetesConfig
from .pod_spec import (LABEL_NODE, MANAGED_BY, ReplicaPodInput, label_value, new_launch, pod_name, replica_pod,
                       replica_secret)
from .pod_status import PodReport, read_pod

log = logging.getLogger("appliance.kubernetes")

LIVE_STATES = (Replica.State.PENDING, Replica.State.STARTING, Replica.State.READY, Replica.State.FAILED)


def core_api(config: KubernetesConfig) -> client.CoreV1Api:
    """The API client: the pod's ServiceAccount in the cluster, or `api_host` when set (no credentials)."""
    if config.api_host:
        return client.CoreV1Api(client.ApiClient(client.Configuration(host=config.api_host)))
    from kubernetes import config as kube_config

    kube_config.load_incluster_config()
    return client.CoreV1Api()


def register_cluster_node(config: KubernetesConfig) -> Node:
    """The Node row that stands for the cluster: placement hands out its core budget like a machine's."""
    if config.cores < 1:
        raise ValueError("APPLIANCE_K8S_CORES is not set: give the cluster's NeuronCore (GPU, CPU) budget for "
                         "replicas, e.g. 24 for one inf2.48xlarge worker node")
    node, _ = Node.objects.update_or_create(name=config.node_name, defaults={
        "device": config.device, "cores": config.cores, "chips": 0, "address": f"k8s:{config.namespace}",
        "instance_type": "kubernetes", "last_heartbeat": timezone.now(),
        "inventory": {"kubernetes": {"namespace": config.namespace, "image": config.image,
                                     "replica_port": config.replica_port, "node_selector": config.node_selector}},
    })
    return node


def model_uri(dep: Deployment) -> str:
    """What the pod loads: the artifact's URI (a path on the models volume, or s3://), else the checkpoint path."""
    return dep.artifact.uri if dep.artifact_id else dep.model_version.source_uri


@dataclass
class ControllerOptions:
    tick_s: float = 1.0
    autoscale: bool = True
    place: bool = True


class ReplicaController:
    def __init__(self, config: KubernetesConfig, options: ControllerOptions | None = None,
                 api: client.CoreV1Api | None = None) -> None:
        self.config = config
        self.options = options or ControllerOptions()
        self.api = api or core_api(config)
        self.node = register_cluster_node(config)
        self.restart_at: dict[int, float] = {}
        self.stopping = threading.Event()
        self.selector = f"app.kubernetes.io/managed-by={MANAGED_BY},{LABEL_NODE}={label_value(config.node_name)}"

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        log.info("replica controller for %s: namespace %s, %d %s cores", self.node.name, self.config.namespace,
                 self.node.cores, self.node.device)
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one bad pass (API server away, database restart) must not stop it
                log.exception("controller tick failed")
                connection.close()
            self.stopping.wait(max(0.0, self.options.tick_s - (time.monotonic() - started)))
        connection.close()
        log.info("replica controller stopped; the replica pods keep serving")

    def tick(self) -> None:
        close_old_connections()
        Node.objects.filter(pk=self.node.pk).update(last_heartbeat=timezone.now())
        if self.options.autoscale:
            from ..autoscaler import autoscale_all

            autoscale_all()
        if self.options.place:
            placement.place_all()
        self.reconcile()

    def pods(self) -> dict[int, list[PodReport]]:
        """This controller's pods by replica id (a replica briefly has two while one is being replaced)."""
        found: dict[int, list[PodReport]] = {}
        for pod in self.api.list_namespaced_pod(self.config.namespace, label_selector=self.selector).items:
            if pod.metadata.deletion_timestamp is not None:
                continue
            report = read_pod(pod)
            found.setdefault(report.replica_id or 0, []).append(report)
        return found

    def reconcile(self) -> None:
        rows = {r.pk: r for r in Replica.objects.filter(node=self.node).exclude(state=Replica.State.STOPPED)
                .select_related("deployment__artifact", "deployment__model_version")}
        pods = self.pods()
        for rid in [rid for rid in pods if rid not in rows]:
            for report in pods.pop(rid):
                self._delete(report.name, f"no live replica #{rid}")
        now = time.monotonic()
        for rid, row in rows.items():
            reports = pods.get(rid, [])
            if row.state == Replica.State.DRAINING:
                self._drain(row, reports)
            elif row.state == Replica.State.PENDING and not reports:
                self._launch(row)
            elif not reports:
                if row.state != Replica.State.FAILED or now >= self.restart_at.get(rid, 0):
                    self._launch(row)  # its pod went away (deleted by hand, or a controller restart lost track)
            else:
                self._observe(row, reports[-1])

    def _launch(self, row: Replica) -> None:
        dep = row.deployment
        launch = new_launch()
        name, secret = pod_name(row.pk, launch), new_secret()
        spec = ReplicaPodInput(
            replica_id=row.pk, index=row.index, deployment=dep.name, cores=max(len(row.cores or []), 1),
            device=dep.device, model_uri=model_uri(dep), engine_args=dict(dep.engine_args or {}),
            restarts_before=row.restart_count,
        )
        try:
            self.api.create_namespaced_secret(self.config.namespace, replica_secret(self.config, spec, name, secret))
            self.api.create_namespaced_pod(self.config.namespace, replica_pod(self.config, spec, name))
        except ApiException as exc:
            self._delete_secret(name)
            Replica.objects.filter(pk=row.pk).update(
                state=Replica.State.FAILED, restart_count=row.restart_count + 1,
                last_error=f"the Kubernetes API refused the pod {name} (or its Secret): {exc.status} {exc.reason}: "
                           f"{(exc.body or '')[:1500]}")
            self.restart_at[row.pk] = time.monotonic() + restart_delay_s(row.restart_count + 1)
            log.warning("pod %s refused: %s %s", name, exc.status, exc.reason)
            return
        self.restart_at.pop(row.pk, None)
        Replica.objects.filter(pk=row.pk).update(
            state=Replica.State.STARTING, pid=None, port=None, secret=secret, started_at=timezone.now(),
            ready_at=None, cold_start_s=None, cold_start_phases={},
        )
        log.info("created pod %s for %s#%d (%d %s cores)", name, dep.name, row.index, spec.cores, dep.device)

    def _observe(self, row: Replica, pod: PodReport) -> None:
        if pod.terminal:
            self._delete(pod.name, "")
            routing_state.clear(row.pk)
            count = max(pod.restarts, row.restart_count) + 1
            delay = restart_delay_s(count)
            self.restart_at[row.pk] = time.monotonic() + delay
            Replica.objects.filter(pk=row.pk, state__in=LIVE_STATES).update(
                state=Replica.State.FAILED, restart_count=count, last_error=pod.error[:2000])
            log.warning("pod %s of %s#%d ended (%s); replaced in %.1fs", pod.name, row.deployment.name, row.index,
                        pod.error[:200], delay)
            placement.place(row.deployment_id)
        elif pod.ready:
            self._ready(row, pod)
        elif pod.error:
            if row.state != Replica.State.FAILED or row.last_error != pod.error[:2000] \
                    or row.restart_count != pod.restarts:
                routing_state.clear(row.pk)
                Replica.objects.filter(pk=row.pk, state__in=LIVE_STATES).update(
                    state=Replica.State.FAILED, restart_count=max(pod.restarts, row.restart_count),
                    last_error=pod.error[:2000])
                log.warning("replica %s#%d failing: %s", row.deployment.name, row.index, pod.error[:200])
                placement.place(row.deployment_id)
        elif row.state in (Replica.State.READY, Replica.State.FAILED) or (pod.note and pod.note != row.last_error):
            if row.state == Replica.State.READY:
                routing_state.clear(row.pk)
            Replica.objects.filter(pk=row.pk, state__in=LIVE_STATES).update(
                state=Replica.State.STARTING, restart_count=max(pod.restarts, row.restart_count),
                last_error=(pod.note or row.last_error)[:2000])

    def _ready(self, row: Replica, pod: PodReport) -> None:
        port = self.config.replica_port
        if row.state == Replica.State.READY and row.host == pod.pod_ip and row.port == port:
            Replica.objects.filter(pk=row.pk).update(last_heartbeat=timezone.now())
            return
        phases = pod.cold_start_phases
        updated = Replica.objects.filter(pk=row.pk, state__in=LIVE_STATES).update(
            state=Replica.State.READY, host=pod.pod_ip, port=port, ready_at=pod.ready_at or timezone.now(),
            cold_start_s=phases.get("first_ready"), cold_start_phases=phases, last_heartbeat=timezone.now(),
            restart_count=max(pod.restarts, row.restart_count),
        )
        if updated and row.state != Replica.State.READY and phases:
            record_cold_start(row.deployment_id, row.index, phases)
        log.info("replica %s#%d ready at %s:%d (pod %s)", row.deployment.name, row.index, pod.pod_ip, port, pod.name)
        placement.place(row.deployment_id)

    def _drain(self, row: Replica, pods: list[PodReport]) -> None:
        for pod in pods:
            self._delete(pod.name, "")
        routing_state.clear(row.pk)
        self.restart_at.pop(row.pk, None)
        Replica.objects.filter(pk=row.pk, state=Replica.State.DRAINING).update(state=Replica.State.STOPPED, pid=None)
        log.info("replica %s#%d drained: pod(s) %s deleted", row.deployment.name, row.index,
                 ", ".join(p.name for p in pods) or "(none)")

    def _delete(self, name: str, reason: str) -> None:
        try:
            self.api.delete_namespaced_pod(name, self.config.namespace, grace_period_seconds=30)
        except ApiException as exc:
            if exc.status != 404:
                raise
        self._delete_secret(name)
        if reason:
            log.info("deleted pod %s: %s", name, reason)

    def _delete_secret(self, name: str) -> None:
        try:
            self.api.delete_namespaced_secret(name, self.config.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
