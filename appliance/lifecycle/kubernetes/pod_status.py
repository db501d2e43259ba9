"""What a replica pod's status says about its replica: ready at an IP, starting, failing (and why), or gone."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kubernetes import client

from .pod_spec import ANNOTATION_RESTARTS_BEFORE, CONTAINER, LABEL_REPLICA

# A container waiting for one of these reasons will not come up by itself.
FAILING_WAIT_REASONS = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                  "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


@dataclass(frozen=True)
class PodReport:
    name: str
    replica_id: int | None
    ready: bool
    pod_ip: str
    terminal: bool  # phase Failed/Succeeded (e.g. evicted): it will not run again; the controller replaces it
    error: str  # why it is failing now ("" when it is not)
    note: str  # why it is not ready yet (unschedulable, the last crash while restarting), "" when nothing to say
    restarts: int  # the row's restart count this pod implies: before it was made + the kubelet's restarts of it
    created_at: datetime | None
    scheduled_at: datetime | None
    ready_at: datetime | None

    @property
    def cold_start_phases(self) -> dict[str, float]:
        """Seconds from the pod's creation to scheduled and to ready, by the API server's clock."""
        if not (self.created_at and self.ready_at):
            return {}
        phases = {"first_ready": (self.ready_at - self.created_at).total_seconds()}
        if self.scheduled_at:
            phases = {"pod_scheduling": (self.scheduled_at - self.created_at).total_seconds(), **phases}
        return {k: round(max(v, 0.0), 3) for k, v in phases.items()}


def describe_exit(terminated: client.V1ContainerStateTerminated) -> str:
    why = f" ({terminated.reason})" if terminated.reason else ""
    message = (terminated.message or "").strip()
    return f"engine exited with code {terminated.exit_code}{why}" + (f": {message[-1500:]}" if message else "")


def _condition(pod: client.V1Pod, kind: str) -> client.V1PodCondition | None:
    return next((c for c in (pod.status.conditions or []) if c.type == kind), None) if pod.status else None


def _engine_status(pod: client.V1Pod) -> client.V1ContainerStatus | None:
    statuses = (pod.status.container_statuses or []) if pod.status else []
    return next((s for s in statuses if s.name == CONTAINER), None)


def _init_failure(pod: client.V1Pod) -> str:
    for status in (pod.status.init_container_statuses or []) if pod.status else []:
        state = status.state
        if state and state.terminated and state.terminated.exit_code:
            return f"init container {status.name}: " + describe_exit(state.terminated).replace("engine ", "", 1)
        if state and state.waiting and state.waiting.reason in FAILING_WAIT_REASONS:
            last = status.last_state.terminated if status.last_state else None
            detail = describe_exit(last).replace("engine ", "", 1) if last else (state.waiting.message or "")
            return f"init container {status.name}: {state.waiting.reason}: {detail}".rstrip(": ")
    return ""


def read_pod(pod: client.V1Pod) -> PodReport:
    meta, status = pod.metadata, pod.status or client.V1PodStatus()
    labels, annotations = meta.labels or {}, meta.annotations or {}
    replica = labels.get(LABEL_REPLICA, "")
    before = annotations.get(ANNOTATION_RESTARTS_BEFORE, "0")
    engine = _engine_status(pod)
    ready_condition, scheduled = _condition(pod, "Ready"), _condition(pod, "PodScheduled")
    ready = bool(ready_condition and ready_condition.status == "True" and status.pod_ip)
    terminal = status.phase in ("Failed", "Succeeded")
    error = note = ""
    if terminal:
        terminated = engine.state.terminated if engine and engine.state else None
        detail = describe_exit(terminated) if terminated else ""
        error = f"pod {status.phase.lower()}" + (f" ({status.reason})" if status.reason else "") + \
            (f": {status.message}" if status.message else "") + (f"; {detail}" if detail else "")
    elif engine and engine.state and engine.state.waiting and engine.state.waiting.reason in FAILING_WAIT_REASONS:
        waiting = engine.state.waiting
        last = engine.last_state.terminated if engine.last_state else None
        error = describe_exit(last) if last else f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
    elif engine and engine.state and engine.state.terminated:
        error = describe_exit(engine.state.terminated)
    else:
        error = _init_failure(pod)
    if not error and not ready:
        if scheduled and scheduled.status == "False":
            note = f"pod not scheduled ({scheduled.reason}): {scheduled.message}"
        elif engine and engine.last_state and engine.last_state.terminated:
            note = "restarted after: " + describe_exit(engine.last_state.terminated)
    return PodReport(
        name=meta.name, replica_id=int(replica) if replica.isdigit() else None, ready=ready,
        pod_ip=status.pod_ip or "", terminal=terminal, error=error, note=note,
        restarts=(int(before) if before.isdigit() else 0) + (engine.restart_count if engine else 0),
        created_at=meta.creation_timestamp,
        scheduled_at=scheduled.last_transition_time if scheduled and scheduled.status == "True" else None,
        ready_at=ready_condition.last_transition_time if ready else None,
    )
