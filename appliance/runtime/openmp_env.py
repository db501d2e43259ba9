"""How the engine's OpenMP threads wait between operations: chosen before torch loads OpenMP (libgomp reads its
environment once, when the library loads), so entry points call ``apply()`` before importing torch.

``APPLIANCE_OMP_WAIT`` picks one of two settings (docs/engine.md, "Threads: sleep or spin"):

- ``passive`` (the default): a worker thread sleeps as soon as an operation ends (``OMP_WAIT_POLICY=PASSIVE``). Right
  wherever the cores are shared with other replicas or the control plane: there, spinning threads steal the cores the
  others need, and two 2-thread engines on two cores ran at 190 output tok/s each with a short spin against 290
  passive.
- ``spin``: a worker spins for a bounded while before it sleeps (``GOMP_SPINCOUNT``, 10,000 iterations): for a
  process that owns its cores, as vLLM's CPU backend assumes. A forward pass runs hundreds of short parallel
  operations, and waking a sleeping thread for each one costs ~50-80 us on this class of machine (a 256 x 576 RMSNorm
  on 2 threads: 379 us passive, 45 us spin). Pinning the threads to cores as well (``OMP_PROC_BIND``) gained nothing
  measurable, and libgomp would pin the initial thread, and so every thread Python starts later, to one core.

``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` already in the environment win.
This module must not import torch.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping

ENV = "APPLIANCE_OMP_WAIT"
CHOICES = ("passive", "spin")
SPIN_COUNT = "10000"
_OWNED = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def settings(choice: str) -> dict[str, str]:
    """The OpenMP variables one choice stands for."""
    if choice == "passive":
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    if choice == "spin":
        return {"GOMP_SPINCOUNT": SPIN_COUNT}
    raise ValueError(f"{ENV} must be one of {', '.join(CHOICES)}; got {choice!r}")


_before_apply: dict[str, str | None] | None = None  # this process's own variables before apply() first changed them


def apply(environ: MutableMapping[str, str] | None = None, default: str = "passive") -> str:
    """Set the chosen OpenMP variables in ``environ`` (os.environ) unless the caller set any of them; returns the
    choice in effect ("passive", "spin", or "environment" when OpenMP variables were already set)."""
    global _before_apply
    env = os.environ if environ is None else environ
    if environ is None and _before_apply is None:
        _before_apply = {name: env.get(name) for name in (ENV, *_OWNED)}
    if any(name in env for name in _OWNED):
        return "environment"
    choice = env.get(ENV, default).strip().lower() or default
    env.update(settings(choice))
    return choice


def child_environ(choice: str) -> dict[str, str]:
    """os.environ for a subprocess that is to run with ``choice`` (a benchmark's engines), leaving out what apply()
    set in this process: ``choice`` replaces an inherited APPLIANCE_OMP_WAIT; OpenMP variables the user set still
    win."""
    settings(choice)  # validates
    env = dict(os.environ)
    for name, value in (_before_apply or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env[ENV] = choice
    apply(env, choice)
    return env


def describe(environ: MutableMapping[str, str] | None = None) -> dict[str, str | None]:
    """The OpenMP wait settings of this process, for reports."""
    env = os.environ if environ is None else environ
    return {name: env.get(name) for name in (ENV, *_OWNED)}
