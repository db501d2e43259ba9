"""Cost per million output tokens, and the recommendation: plain functions over a run's result JSON (no Django).

Cost rule: a replica costs its share of its instance, `hourly price × cores_per_replica / cores on the node`
(a replica that owns the whole instance pays all of it); a configuration costs the sum over its replicas. A level's
cost per million output tokens is that hourly cost over the tokens per hour the level produced:
`hourly_cost / (output_tok_s × 3600) × 1e6`.

Recommendation: over the levels of one or more runs (configurations), those that meet the SLOs — at least
`attainment` (default 90%) of the level's requests met both the TTFT and the ITL SLO, and no request failed — and
among them the one with the lowest cost per million output tokens (ties: the higher throughput). Its concurrency per
replica becomes the deployment's autoscaling target (target_outstanding_per_replica); the replica count is the run's,
or, given an expected peak of concurrent requests, the count that holds that peak at the recommended concurrency.
"""
from __future__ import annotations

import math

DEFAULT_ATTAINMENT = 0.9


def hourly_cost(hourly_usd: float | None, replicas: int, cores_per_replica: int, node_cores: int) -> float | None:
    """The configuration's hourly cost by the rule above; None without a price."""
    if hourly_usd is None or replicas < 1:
        return None
    share = min(cores_per_replica / node_cores, 1.0) if node_cores > 0 else 1.0
    return hourly_usd * share * replicas


def cost_per_million(hourly: float | None, output_tok_s: float) -> float | None:
    if hourly is None or output_tok_s <= 0:
        return None
    return hourly / (output_tok_s * 3600.0) * 1e6


def level_meets(level: dict, attainment: float = DEFAULT_ATTAINMENT) -> tuple[bool, str]:
    """Whether the level meets its run's SLOs, and if not, why (in words)."""
    if not level.get("succeeded"):
        return False, "no request succeeded"
    if level.get("errors_failed"):
        return False, f"{level['errors_failed']} request(s) failed"
    if level.get("errors_rate_limited"):
        return False, f"{level['errors_rate_limited']} request(s) were rate-limited"
    share = level["goodput"] / level["requests"]
    if share < attainment:
        return False, f"only {share:.0%} of requests met the SLOs (need {attainment:.0%})"
    return True, f"{share:.0%} of requests met the SLOs"


def per_replica_concurrency(level: dict, replicas: int) -> int:
    """Requests in flight per replica the level held: its closed-loop concurrency, or for an open-loop level the
    mean in flight it measured (Little's law), divided over the replicas; at least 1."""
    held = level.get("concurrency") or level.get("mean_in_flight") or 1
    return max(1, math.floor(held / max(replicas, 1)))


def recommend(runs: list[dict], attainment: float = DEFAULT_ATTAINMENT, peak_concurrency: int | None = None) -> dict:
    """The cheapest level that meets the SLOs over `runs` (each a run's results: {"run", "config", "levels"}).

    Returns {"meets_slo": bool, "reason", "candidates": [...]} and, when one meets, "run", "deployment",
    "concurrency", "concurrency_per_replica", "replicas", "cores_per_replica", "cost_per_million_output_tokens",
    "output_tok_s", "ttft_p90", "itl_p90", "e2e_p50", "goodput_share", "slo".
    """
    candidates = []
    for run in runs:
        config = run.get("config", {})
        replicas = int(config.get("replicas") or 1)
        for level in run.get("levels", []):
            ok, why = level_meets(level, attainment)
            candidates.append({
                "run": run.get("run"), "deployment": config.get("deployment"), "replicas": replicas,
                "cores_per_replica": config.get("cores_per_replica"), "concurrency": level.get("concurrency"),
                "rate": level.get("rate"), "meets_slo": ok, "why": why,
                "cost_per_million_output_tokens": level.get("cost_per_million_output_tokens"),
                "output_tok_s": level.get("output_tok_s"), "ttft_p90": level.get("ttft_p90"),
                "itl_p90": level.get("itl_p90"), "e2e_p50": level.get("e2e_p50"),
                "goodput_share": level["goodput"] / level["requests"] if level.get("requests") else 0.0,
                "concurrency_per_replica": per_replica_concurrency(level, replicas), "slo": config.get("slo"),
            })
    meeting = [c for c in candidates if c["meets_slo"]]
    if not meeting:
        return {"meets_slo": False, "candidates": candidates,
                "reason": "no level met the SLOs: relax them, add replicas, or test lower concurrencies"}
    priced = [c for c in meeting if c["cost_per_million_output_tokens"] is not None]
    if priced:
        best = min(priced, key=lambda c: (c["cost_per_million_output_tokens"], -c["output_tok_s"]))
        basis = f"the lowest cost per million output tokens (${best['cost_per_million_output_tokens']:.4g})"
    else:
        best = max(meeting, key=lambda c: c["output_tok_s"] / (c["replicas"] * (c["cores_per_replica"] or 1)))
        basis = "the highest output tok/s per core (no instance price is set, so no cost)"
    replicas = best["replicas"]
    if peak_concurrency:
        replicas = max(1, math.ceil(peak_concurrency / best["concurrency_per_replica"]))
    chosen = {k: v for k, v in best.items() if k not in ("why", "meets_slo")}
    level_name = f"concurrency {best['concurrency']}" if best["concurrency"] else f"rate {best['rate']}/s"
    reason = (f"run {best['run']} at {level_name} on {best['replicas']} replica(s) meets the SLOs "
              f"({best['why']}) at {basis}, among {len(meeting)} of {len(candidates)} levels that met them")
    if peak_concurrency:
        reason += f"; {replicas} replica(s) hold a peak of {peak_concurrency} concurrent requests"
    return {**chosen, "meets_slo": True, "replicas": replicas, "measured_replicas": best["replicas"],
            "reason": reason, "candidates": candidates}
