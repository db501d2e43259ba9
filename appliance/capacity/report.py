"""The benchmark table the CLI prints (and docs/capacity.md shows), and the contract's JSON."""
from __future__ import annotations

COLUMNS = [  # (header, key, format)
    ("conc", "concurrency", "{}"), ("rate/s", "rate", "{:g}"), ("req", "requests", "{}"), ("err", "errors", "{}"),
    ("ttft p50", "ttft_p50", "{:.3f}"), ("ttft p90", "ttft_p90", "{:.3f}"), ("ttft p99", "ttft_p99", "{:.3f}"),
    ("itl p50", "itl_p50", "{:.4f}"), ("itl p99", "itl_p99", "{:.4f}"), ("e2e p50", "e2e_p50", "{:.3f}"),
    ("out tok", "output_tokens", "{}"), ("tok/s", "output_tok_s", "{:.1f}"), ("req/s", "requests_per_s", "{:.2f}"),
    ("goodput", "goodput", "{}"), ("batch", "mean_batch_size", "{:.2f}"), ("kv", "kv_use", "{:.1%}"),
    ("util", "core_utilization", "{:.0%}"), ("$/Mtok", "cost_per_million_output_tokens", "{:.3f}"),
]


def _cell(level: dict, key: str, fmt: str) -> str:
    value = level.get(key)
    return "-" if value is None else fmt.format(value)


def table(results: dict) -> str:
    levels = results.get("levels", [])
    columns = [c for c in COLUMNS if any(level.get(c[1]) is not None for level in levels) or c[1] in (
        "concurrency", "requests", "errors")]
    rows = [[h for h, _, _ in columns]] + [[_cell(level, k, f) for _, k, f in columns] for level in levels]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    config = results.get("config", {})
    head = (f"deployment {config.get('deployment')}: {config.get('replicas')} replica(s) x "
            f"{config.get('cores_per_replica')} core(s), profile {config.get('profile')}, "
            f"SLO ttft <= {config.get('slo', {}).get('ttft_s')} s, itl <= {config.get('slo', {}).get('itl_s')} s, "
            f"{config.get('instance_type') or 'no instance type'} "
            f"{'$%.4f/h' % config['hourly_cost_usd'] if config.get('hourly_cost_usd') is not None else '(no price)'}")
    rec = results.get("recommendation") or {}
    tail = "recommendation: " + (
        f"{rec['concurrency_per_replica']} concurrent requests per replica, {rec['replicas']} replica(s) - "
        f"{rec['reason']}" if rec.get("meets_slo") else rec.get("reason", "none"))
    return "\n".join([head, *lines, tail])


def contract_json(results: dict) -> dict:
    """The results as the CLI writes them: the run's whole results (config, levels with every figure, and the
    recommendation without its per-level candidates list, which repeats the levels)."""
    rec = {k: v for k, v in (results.get("recommendation") or {}).items() if k != "candidates"}
    return {**results, "recommendation": rec}
