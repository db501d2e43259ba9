"""Profiling the engine loop of a live replica with torch.profiler (CPU/CUDA): POST /profile on the server.

Run as a module it prints the step profile instead (stage by stage, at the benchmark's sizes): see step_profile.py.

    python -m appliance.runtime.profiling [--model DIR] [--threads 2] [--json out.json]
    python -m appliance.runtime.profiling --whole-run --threads 2      (the peer benchmark's workload, every step)
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from appliance.runtime import openmp_env

openmp_env.apply()  # run as a module: before torch loads OpenMP (in a replica the server has applied it already)

import torch  # noqa: E402

from appliance.runtime.async_engine import AsyncEngine  # noqa: E402


async def profile_engine(engine: AsyncEngine, seconds: float, out_dir: str, top: int = 25) -> dict[str, Any]:
    """Profile whatever the engine runs for `seconds`; write a Chrome trace and a per-operator summary to out_dir."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    prof = torch.profiler.profile(activities=activities, record_shapes=False)
    steps_before = getattr(engine.stats(), "steps", 0)
    await engine.call(lambda core: prof.__enter__())
    try:
        await asyncio.sleep(seconds)
    finally:
        await engine.call(lambda core: prof.__exit__(None, None, None))
    steps = getattr(engine.stats(), "steps", 0) - steps_before
    return await asyncio.to_thread(_write, prof, Path(out_dir), seconds, steps, top)


def _write(prof: Any, out: Path, seconds: float, steps: int, top: int) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    trace = out / "trace.json"
    prof.export_chrome_trace(str(trace))
    averages = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    ops = [
        {"name": e.key, "count": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1000, 3),
         "cpu_total_ms": round(e.cpu_time_total / 1000, 3)}
        for e in averages[:top]
    ]
    summary = {"seconds": seconds, "engine_steps": steps, "trace": str(trace), "top_ops": ops}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    import sys

    from appliance.runtime.step_profile import main

    sys.exit(main())
