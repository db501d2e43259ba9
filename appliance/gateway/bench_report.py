"""The gateway overhead benchmark's figures (bench.py runs it): per-path statistics, each gateway against each
baseline round by round, CPU per token, and the printed report."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

BASELINES = {
    "engine": "direct to the replica, one /generate stream per request: its per-request API",
    "session": "direct to the replica over one /session: the channel the gateway itself uses, without the gateway",
}
LABELS = {"engine": "engine direct", "session": "engine session", "gateway": "through gateway",
          "gateway-streams": "gateway, streams"}


@dataclass
class Phase:
    path: str  # a key of BASELINES, or of bench.GATEWAYS
    requests: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    ttft_s: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU time each server process used in the phase
    engine_ttft_s: float | None = None  # mean arrival-to-first-token inside the engine (its own histogram)
    round: int = 0

    @property
    def throughput(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def path_stats(phases: list[Phase], path: str) -> dict:
    ps = [ph for ph in phases if ph.path == path]
    ttfts = [t for ph in ps for t in ph.ttft_s]
    tokens, wall = sum(ph.tokens for ph in ps), sum(ph.wall_s for ph in ps)
    return {"requests": sum(ph.requests for ph in ps), "errors": sum(ph.errors for ph in ps),
            "completion_tokens": tokens, "wall_s": wall, "throughput_tok_s": tokens / wall if wall else 0.0,
            "ttft_median_ms": median_ms(ttfts),
            "ttft_p90_ms": statistics.quantiles(ttfts, n=10)[-1] * 1000 if len(ttfts) >= 10 else None}


def compare(phases: list[Phase], stats: dict[str, dict], gateway: str, baseline: str) -> dict:
    """The gateway against the baseline: medians over rounds of the per-round differences (each round runs every
    path back to back, so comparing within a round cancels slow drifts in machine load), and pooled figures."""
    by_round = {(ph.round, ph.path): ph for ph in phases}
    pairs = [(by_round[r, baseline], by_round[r, gateway]) for r in sorted({ph.round for ph in phases})]
    added = [median_ms(g.ttft_s) - median_ms(b.ttft_s) for b, g in pairs]
    share = [g.throughput / b.throughput * 100 for b, g in pairs]
    g, b = stats[gateway], stats[baseline]
    result = {"added_median_ttft_ms": statistics.median(added), "throughput_share_pct": statistics.median(share),
              "per_round": {"added_median_ttft_ms": added, "throughput_share_pct": share},
              "pooled": {"added_median_ttft_ms": g["ttft_median_ms"] - b["ttft_median_ms"],
                         "throughput_share_pct": g["throughput_tok_s"] / b["throughput_tok_s"] * 100}}
    result["passed"] = result["added_median_ttft_ms"] <= 5.0 and result["throughput_share_pct"] >= 95.0
    return result


def cpu_us_per_token(phases: list[Phase], path: str) -> dict[str, float]:
    """Load-independent view: CPU time per relayed token of each watched process, from its own accounting."""
    ps = [ph for ph in phases if ph.path == path and ph.tokens]
    tokens = sum(ph.tokens for ph in ps)
    names = sorted({name for ph in ps for name in ph.cpu_s})
    return {name: sum(ph.cpu_s.get(name, 0.0) for ph in ps) / tokens * 1e6 for name in names} if tokens else {}


def render(report: dict, model: str, paths: list[str], out: Path) -> str:
    """The report as printed."""
    gateways = report["gateways"]
    lines = [f"Gateway overhead ({report['database']}; model {model}; {report['concurrency']} concurrent streams, "
             f"{report['max_tokens']} tokens each +-{report['length_spread']:.0%})",
             " " * 22 + "".join(f"{LABELS[p]:>18s}" for p in paths),
             "  median TTFT (ms)    " + "".join(f"{report[p]['ttft_median_ms']:18.2f}" for p in paths),
             "  throughput (tok/s)  " + "".join(f"{report[p]['throughput_tok_s']:18.1f}" for p in paths),
             "  errors              " + "".join(f"{report[p]['errors']:18d}" for p in paths)]
    for gateway, comparisons in report["comparisons_by_gateway"].items():
        for baseline, c in comparisons.items():
            per = c["per_round"]
            lines += [f"  {LABELS[gateway]} against {LABELS[baseline]} ({BASELINES[baseline]}):",
                      f"    per round: added TTFT {', '.join(f'{v:.1f}' for v in per['added_median_ttft_ms'])} ms; "
                      f"share {', '.join(f'{v:.0f}' for v in per['throughput_share_pct'])} %",
                      f"    added median TTFT: {c['added_median_ttft_ms']:.2f} ms (target <= 5)   throughput share: "
                      f"{c['throughput_share_pct']:.1f}% (target >= 95)   {'pass' if c['passed'] else 'FAIL'}"]
    lines.append("  (medians over rounds; each round runs every path back to back)")
    for path in paths:
        lines.append(f"  CPU per token, {LABELS[path]} phases: "
                     + ", ".join(f"{k} {v:.0f} us" for k, v in report["cpu_us_per_token"][path].items()))
    lines.append(f"  {'PASS' if report['passed'] else 'FAIL'} ({LABELS[gateways[0]]} against "
                 f"{LABELS[report['verdict_baseline']]}); report written to {out}")
    return "\n".join(lines)
