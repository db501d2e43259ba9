"""The node agent loop: heartbeat, placement and autoscaling passes, and replica processes reconciled with rows.

Replica states as the agent drives them: pending (placed) -> starting (process launched) -> ready (READY printed and
a 1-token warm-up answered; cold_start_s and the start's phases recorded, also on the deployment) ; a process that exits unasked -> failed (restart_count,
last_error) and relaunched after an exponential backoff ; draining (scaled in or evicted) -> stopped.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from appliance.catalog.models import Deployment, Node, Replica

from .. import node_state, placement, routing_state
from ..conf import setting
from ..services import record_cold_start
from .replica_process import ReplicaProcess, ReplicaSpec

log = logging.getLogger("appliance.agent")


@dataclass
class AgentOptions:
    node_name: str
    device: str = "cpu"
    cores: int | None = None
    tick_s: float = 1.0
    autoscale: bool = True
    place: bool = True
    server_module: str = "appliance.runtime.server"
    address: str = "127.0.0.1"  # where other nodes reach this node's replicas (NODE_ADDRESS)


def restart_delay_s(restart_count: int) -> float:
    base, cap = setting("RESTART_BACKOFF_BASE_S"), setting("RESTART_BACKOFF_MAX_S")
    return min(base * 2 ** max(restart_count - 1, 0), cap)


def model_dir(dep: Deployment, node: Node | None = None) -> str:
    """Where a replica loads its model from: the compiled artifact, copied from the artifact store into this node's
    cache (verified, once per node), else the registered checkpoint. Cache entries that `node`'s live replicas use
    are never evicted."""
    if not dep.artifact_id:
        return dep.model_version.source_uri
    from ..artifact_cache import node_cache
    from ..artifact_store import get_store, store_of

    artifact = dep.artifact

    def open_store():
        store = get_store()
        if store.exists(artifact.digest):
            return store
        return store_of(artifact.uri)[0]  # recorded under another store URL (the setting changed): read it there

    node_name = node.name if node is not None else settings.NODE_NAME
    live = (Replica.objects.filter(node__name=node_name, deployment__artifact__isnull=False)
            .exclude(state=Replica.State.STOPPED).values_list("deployment__artifact__digest", flat=True))
    with _heartbeat_during(node):
        return str(node_cache().fetch(artifact.digest, open_store, keep=set(live)).path)


@contextmanager
def _heartbeat_during(node: Node | None) -> Iterator[None]:
    """Keep `node` heartbeating while a long step (a first fill of a large artifact) holds up the agent's tick, so
    the fleet does not take a busy node for a lost one."""
    if node is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(min(5.0, setting("NODE_LOST_AFTER_S") / 3)):
                node_state.heartbeat(node.pk)
        finally:
            connection.close()

    beater = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{node.name}")
    beater.start()
    try:
        yield
    finally:
        stop.set()
        beater.join(timeout=5)


class NodeAgent:
    def __init__(self, options: AgentOptions) -> None:
        from ..inventory import register_node

        self.options = options
        self.node: Node = register_node(options.node_name, options.device, address=options.address,
                                        cores=options.cores)
        self.procs: dict[int, ReplicaProcess] = {}
        self.restart_at: dict[int, float] = {}
        self.stopping = threading.Event()
        self.log_dir = Path(settings.RUN_DIR) / "replicas"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def run(self) -> None:
        """Reconcile every tick until SIGTERM/SIGINT, then stop every replica this agent started."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        self._adopt_orphans()
        log.info("node agent on %s (%s): %s %d cores", self.node.name, self.node.address, self.node.device,
                 self.node.cores)
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - one bad pass must not take the node's replicas down
                    log.exception("agent tick failed")
                    connection.close()
                self.stopping.wait(max(0.0, self.options.tick_s - (time.monotonic() - started)))
        finally:
            self.shutdown()

    def tick(self) -> None:
        close_old_connections()
        node_state.heartbeat(self.node.pk)
        if self.options.autoscale:
            from ..autoscaler import autoscale_all

            autoscale_all()
        if self.options.place:
            placement.place_all()
        self.reconcile()

    def reconcile(self) -> None:
        if self.stopping.is_set():
            return
        rows = {r.pk: r for r in Replica.objects.filter(node=self.node).exclude(state=Replica.State.STOPPED)
                .select_related("deployment__artifact", "deployment__model_version")}
        for rid in [rid for rid in self.procs if rid not in rows]:
            self._stop(rid, None, "replica row removed")
        now = time.monotonic()
        alive_ready = []
        for rid, row in rows.items():
            proc = self.procs.get(rid)
            if row.state == Replica.State.DRAINING:
                self._stop(rid, row, "")
            elif row.state == Replica.State.PENDING:
                self._launch(row)
            elif row.state == Replica.State.FAILED:
                if proc is None and now >= self.restart_at.get(rid, 0):
                    self._launch(row)
            elif proc is None:  # starting/ready but not ours: the agent restarted; relaunch it
                self._launch(row)
            elif proc.exit_code() is not None:
                self._crashed(row, proc)
            elif row.state == Replica.State.READY:
                alive_ready.append(rid)
        if alive_ready:
            Replica.objects.filter(pk__in=alive_ready).update(last_heartbeat=timezone.now())

    def _launch(self, row: Replica) -> None:
        dep = row.deployment
        fetching = time.monotonic()
        try:
            source = model_dir(dep, self.node)
        except (OSError, RuntimeError, ValueError) as exc:  # store unreachable, artifact damaged: say so on the row
            self._fetch_failed(row, exc)
            return
        artifact_fetch_s = time.monotonic() - fetching
        spec = ReplicaSpec(
            replica_id=row.pk, model_dir=source, device=dep.device, cores=list(row.cores or []),
            server_module=self.options.server_module, served_model_name=dep.name,
            engine_args={"scheduling_policy": "priority", **(dep.engine_args or {})},  # live (0) before jobs
            host=self.node.address or "127.0.0.1", log_path=self.log_dir / f"{dep.name}-{row.index}-{row.pk}.log",
        )
        proc = ReplicaProcess(spec)
        self.procs[row.pk] = proc
        self.restart_at.pop(row.pk, None)
        Replica.objects.filter(pk=row.pk).update(
            state=Replica.State.STARTING, pid=proc.pid, port=None, secret=proc.secret, started_at=timezone.now(),
            ready_at=None, cold_start_s=None, cold_start_phases={},
        )
        log.info("started %s#%d pid %d on cores %s %s", dep.name, row.index, proc.pid, row.cores, proc.env_assigned)
        threading.Thread(target=self._await_ready, args=(row.pk, dep.pk, row.index, proc, artifact_fetch_s), daemon=True,
                         name=f"ready-{row.pk}").start()

    def _await_ready(self, rid: int, dep_id: int, index: int, proc: ReplicaProcess, artifact_fetch_s: float) -> None:
        try:
            url = proc.wait_ready(setting("REPLICA_READY_TIMEOUT_S"))
            proc.warm_up()
            phases = proc.start_phases(artifact_fetch_s)
            host = url.removeprefix("http://").rsplit(":", 1)[0]
            updated = Replica.objects.filter(pk=rid, state=Replica.State.STARTING, pid=proc.pid).update(
                state=Replica.State.READY, host=host or "127.0.0.1", port=proc.port, ready_at=timezone.now(),
                cold_start_s=phases["first_ready"], cold_start_phases=phases, last_heartbeat=timezone.now(),
            )
            if updated:
                record_cold_start(dep_id, index, phases)
                log.info("replica %d ready at %s, cold start %.2fs %s", rid, url, phases["first_ready"], phases)
                placement.place(dep_id)
        except Exception as exc:  # noqa: BLE001 - recorded on the row; the main loop restarts it
            log.warning("replica %d failed to start: %s", rid, exc)
            if proc.exit_code() is None:
                Replica.objects.filter(pk=rid).update(last_error=str(exc)[:2000])
                proc.proc.kill()
        finally:
            connection.close()

    def _fetch_failed(self, row: Replica, exc: Exception) -> None:
        count = row.restart_count + 1
        delay = restart_delay_s(count)
        self.restart_at[row.pk] = time.monotonic() + delay
        error = f"could not fetch the model's artifact onto node {self.node.name}: {exc}"
        Replica.objects.filter(pk=row.pk).update(state=Replica.State.FAILED, restart_count=count,
                                                 last_error=error[:2000], pid=None)
        log.warning("replica %s#%d: %s; retry in %.1fs", row.deployment.name, row.index, error[:300], delay)

    def _crashed(self, row: Replica, proc: ReplicaProcess) -> None:
        code = proc.exit_code()
        self.procs.pop(row.pk, None)
        routing_state.clear(row.pk)
        count = row.restart_count + 1
        delay = restart_delay_s(count)
        self.restart_at[row.pk] = time.monotonic() + delay
        error = row.last_error if row.state == Replica.State.STARTING and row.last_error else ""
        error = error or f"engine exited with code {code}: {proc.last_output()}"
        Replica.objects.filter(pk=row.pk).update(
            state=Replica.State.FAILED, restart_count=count, last_error=error[:2000], pid=None,
        )
        log.warning("replica %s#%d crashed (%s); restart %d in %.1fs", row.deployment.name, row.index, error[:200],
                    count, delay)
        placement.place(row.deployment_id)

    def _stop(self, rid: int, row: Replica | None, reason: str) -> None:
        proc = self.procs.pop(rid, None)
        if proc is not None:
            proc.stop(grace_s=10.0)
        routing_state.clear(rid)
        self.restart_at.pop(rid, None)
        if row is not None:
            Replica.objects.filter(pk=rid).update(state=Replica.State.STOPPED, pid=None,
                                                  **({"last_error": reason} if reason else {}))

    def _adopt_orphans(self) -> None:
        """Kill engine processes a previous agent on this node left behind (their rows are relaunched)."""
        for row in Replica.objects.filter(node=self.node, pid__isnull=False).exclude(state=Replica.State.STOPPED):
            try:
                with open(f"/proc/{row.pid}/cmdline", "rb") as f:
                    cmdline = f.read().decode(errors="replace")
            except OSError:
                continue
            if self.options.server_module in cmdline:
                os.kill(row.pid, signal.SIGKILL)

    def shutdown(self) -> None:
        for rid in list(self.procs):
            self._stop(rid, Replica(pk=rid), "node agent stopped")
        connection.close()
        log.info("node agent stopped; all replicas stopped")
