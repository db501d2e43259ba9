"""Reading a replica pod's status (official client models, as the API returns them) into what its replica shows."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kubernetes import client

from appliance.lifecycle.kubernetes.pod_status import read_pod

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pod(status: client.V1PodStatus, restarts_before: str = "0") -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="appliance-replica-5-abc123", creation_timestamp=T0,
                                     labels={"appliance.io/replica-id": "5"},
                                     annotations={"appliance.io/restarts-before": restarts_before}),
        status=status,
    )


def condition(kind: str, ok: bool, at: datetime, **extra) -> client.V1PodCondition:
    return client.V1PodCondition(type=kind, status="True" if ok else "False", last_transition_time=at, **extra)


def test_a_ready_pod_reports_its_ip_and_cold_start_phases():
    report = read_pod(pod(client.V1PodStatus(phase="Running", pod_ip="10.0.0.9", conditions=[
        condition("PodScheduled", True, T0 + timedelta(seconds=2)),
        condition("Ready", True, T0 + timedelta(seconds=50))])))
    assert (report.replica_id, report.ready, report.pod_ip, report.error) == (5, True, "10.0.0.9", "")
    assert report.cold_start_phases == {"pod_scheduling": 2.0, "first_ready": 50.0}


def test_a_failing_init_container_is_the_replica_s_error():
    init = client.V1ContainerStatus(
        name="fetch-artifact", ready=False, restart_count=3, image="img", image_id="",
        state=client.V1ContainerState(waiting=client.V1ContainerStateWaiting(reason="CrashLoopBackOff")),
        last_state=client.V1ContainerState(terminated=client.V1ContainerStateTerminated(
            exit_code=1, message="FAILED fetching s3://b/a/d: NoCredentialsError")))
    report = read_pod(pod(client.V1PodStatus(phase="Pending", init_container_statuses=[init])))
    assert not report.ready and not report.terminal
    assert report.error == ("init container fetch-artifact: CrashLoopBackOff: exited with code 1: "
                            "FAILED fetching s3://b/a/d: NoCredentialsError")


def test_an_image_that_cannot_be_pulled_is_an_error_and_restarts_add_to_the_earlier_ones():
    engine = client.V1ContainerStatus(
        name="engine", ready=False, restart_count=2, image="img", image_id="",
        state=client.V1ContainerState(waiting=client.V1ContainerStateWaiting(
            reason="ImagePullBackOff", message='Back-off pulling image "registry/appliance:nope"')))
    report = read_pod(pod(client.V1PodStatus(phase="Pending", container_statuses=[engine]), restarts_before="3"))
    assert report.error == 'ImagePullBackOff: Back-off pulling image "registry/appliance:nope"'
    assert report.restarts == 5


def test_a_restarted_engine_that_is_loading_again_is_not_an_error_but_says_what_happened():
    engine = client.V1ContainerStatus(
        name="engine", ready=False, restart_count=1, image="img", image_id="",
        state=client.V1ContainerState(running=client.V1ContainerStateRunning(started_at=T0)),
        last_state=client.V1ContainerState(terminated=client.V1ContainerStateTerminated(
            exit_code=137, reason="OOMKilled")))
    report = read_pod(pod(client.V1PodStatus(phase="Running", container_statuses=[engine])))
    assert report.error == "" and report.note == "restarted after: engine exited with code 137 (OOMKilled)"
