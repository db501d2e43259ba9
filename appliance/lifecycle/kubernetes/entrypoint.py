"""How `manage.py run_agent` runs the replica controller when APPLIANCE_REPLICA_BACKEND=kubernetes."""
from __future__ import annotations

from typing import Any, TextIO

from django.core.management.base import CommandError

from ..conf import setting
from .config import KubernetesConfig, replica_backend


def selected() -> bool:
    """Whether APPLIANCE_REPLICA_BACKEND asks for pods; a value that is neither backend is a CommandError."""
    try:
        return replica_backend() == "kubernetes"
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def run_controller(opts: dict[str, Any], stdout: TextIO) -> None:
    """Run the controller in the foreground until SIGTERM/SIGINT; run_agent's --tick, --no-autoscale and
    --no-placement apply; the cluster's node, device and cores come from the APPLIANCE_K8S_* settings."""
    from .controller import ControllerOptions, ReplicaController

    try:
        config = KubernetesConfig.from_settings()
        controller = ReplicaController(config, ControllerOptions(
            tick_s=opts["tick"] if opts.get("tick") is not None else setting("AGENT_TICK_S"),
            autoscale=not opts.get("no_autoscale"), place=not opts.get("no_placement"),
        ))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    stdout.write(f"replica controller on {controller.node.name}: {controller.node.device}, {controller.node.cores} "
                 f"cores as pods in namespace {config.namespace}\n")
    stdout.flush()
    controller.run()
