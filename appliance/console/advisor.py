"""The hosting advisor's scoring: for a model and a tenant's needs, how well each hosting option fits.

Plain logic over plain data (no Django): `advise(needs, figures)` scores the three options the appliance offers —
dedicated cores, the shared pool, per-model cores that scale to zero — on five fitness functions, each 0..10
(higher fits better), and recommends one with its reason. `appliance.console.advisor_figures` gathers the
`Figures` from what the appliance measured; anything it could not measure carries the assumption it used in
`Figures.sources`.

The models behind the scores:

- traffic: Poisson arrivals of `requests_per_min`; "spiky" traffic arrives in bursts of BURST_SIZE requests (the
  bursts are Poisson), "steady" is plain Poisson. Peak load is the mean times PEAK_FACTOR[pattern].
- cold start: a request finds no replica when the gap before it is longer than the idle timeout (per-model) or the
  pool residency (shared: the least-recently-used model is evicted when others load): P = exp(-rate * timeout),
  rate being bursts per second.
- model size: the bytes a replica needs (weights plus KV headroom, or the Neuron plan's per-core need) against the
  memory the option gives it; 10 while it uses at most half, 0 when it does not fit.
- latency: the warm p95 TTFT, times SHARED_CONTENTION in the pool (whose cores serve other models too), times the
  overload when the option cannot reach the replicas the peak needs; 10 when it meets the SLO, SLO / expected
  below. A tenant that does not tolerate cold starts has the cold start added once more than 0.1 % of its
  requests meet one; a tenant that tolerates them loses COLD_PENALTY of the score per unit of cold fraction.
- isolation: dedicated cores 10, per-model cores 8 (its own cores, but placed on demand beside others), shared
  pool 2 (other models' requests on the same cores, eviction by them).
- cost: core-hours a month: always-on replicas (dedicated); replicas up only while traffic comes (per-model: the
  up fraction is 1 - exp(-rate * idle timeout)); the tenant's share of the pool's cores (shared). Score: 10 for the
  cheapest, 10 * cheapest / this for the others.
- scalability: how many of the peak's needed replicas the option can reach (free cores / cores per replica; the
  pool holds one replica), times how elastically it follows the load (per-model 10, dedicated 8, shared 6).

The recommendation: options that fit in memory, isolate when isolation is required (score >= 8), and, for a tenant
that does not tolerate cold starts, do not put them past its SLO in more than 0.1 % of requests; among those,
the highest sum of model size, latency, cost, scalability (and isolation, when it is required); a tie goes to the
cheaper.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

OPTIONS = ("dedicated", "shared", "per_model")
OPTION_TITLES = {"dedicated": "Dedicated cores", "shared": "Shared pool", "per_model": "Per-model cores, scale to zero"}
FITNESS = ("model_size", "latency", "isolation", "cost", "scalability")
FITNESS_TITLES = {"model_size": "Model size", "latency": "Latency", "isolation": "Isolation", "cost": "Cost",
                  "scalability": "Scalability"}
PATTERNS = ("steady", "spiky")
BURST_SIZE = 10
PEAK_FACTOR = {"steady": 1.5, "spiky": 5.0}
SHARED_CONTENTION = 1.5
ISOLATION = {"dedicated": 10.0, "per_model": 8.0, "shared": 2.0}
ELASTICITY = {"per_model": 10.0, "dedicated": 8.0, "shared": 6.0}
ISOLATED_ENOUGH = 8.0
HOURS_PER_MONTH = 730.0
COLD_TAIL = 0.001  # cold starts in more than this share of requests reach a strict tenant's tail latency
COLD_PENALTY = 0.3
KV_HEADROOM = 1.2  # bytes a replica needs over its weights when no plan says (KV cache, activations)


@dataclass(frozen=True)
class Needs:
    """What the tenant needs."""

    isolation_required: bool = False
    latency_slo_ms: float = 1000.0  # p95 time to first token
    traffic: str = "steady"  # one of PATTERNS
    requests_per_min: float = 10.0
    tolerates_cold_start: bool = True
    tenants_sharing: int = 1  # models (tenants) that would share the pool's cores

    def __post_init__(self) -> None:
        if self.traffic not in PATTERNS:
            raise ValueError(f"traffic must be one of {', '.join(PATTERNS)}, got {self.traffic!r}")
        if self.latency_slo_ms <= 0:
            raise ValueError("latency_slo_ms must be positive")
        if self.requests_per_min < 0:
            raise ValueError("requests_per_min must be 0 or more")
        if self.tenants_sharing < 1:
            raise ValueError("tenants_sharing must be at least 1")


@dataclass(frozen=True)
class Figures:
    """What the appliance knows about the model and the node; `sources` says where each figure came from."""

    replica_bytes: int  # memory one replica of the model needs
    core_memory_bytes: int  # memory per core on the node
    cores_per_replica: int = 1
    free_cores: int = 1  # cores a deployment could still take (its own included)
    pool_cores: int = 1
    pool_max_models: int = 2
    idle_timeout_s: float = 300.0
    pool_residency_s: float = 120.0
    cold_start_s: float = 5.0
    ttft_p95_s: float = 0.2
    replica_rps: float = 1.0  # requests per second one replica serves at its batch size
    price_per_core_hour: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OptionScore:
    option: str
    title: str
    scores: dict[str, float]  # fitness -> 0..10
    eligible: bool
    excluded_because: str
    figures: dict[str, Any]  # the numbers behind the scores, for the page
    total: float


@dataclass(frozen=True)
class Advice:
    needs: Needs
    figures: Figures
    options: list[OptionScore]
    recommended: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"needs": asdict(self.needs), "figures": asdict(self.figures), "fitness": list(FITNESS),
                "fitness_titles": FITNESS_TITLES, "recommended": self.recommended, "reason": self.reason,
                "options": [asdict(o) for o in self.options]}


def _clamp(value: float) -> float:
    return round(max(0.0, min(10.0, value)), 2)


def size_score(need_bytes: int, available_bytes: float) -> float:
    """10 while the replica uses at most half the memory the option gives it, falling to 0 when it no longer fits."""
    if available_bytes <= 0:
        return 0.0
    used = need_bytes / available_bytes
    if used <= 0.5:
        return 10.0
    return _clamp(10.0 * (1.0 - used) / 0.5)


def arrival_rate(needs: Needs) -> float:
    """Independent arrivals per second: requests, or bursts of them for spiky traffic."""
    rate = needs.requests_per_min / 60.0
    return rate / BURST_SIZE if needs.traffic == "spiky" else rate


def cold_fraction(needs: Needs, timeout_s: float) -> float:
    """The share of arrivals that find no replica: gaps longer than `timeout_s`."""
    rate = arrival_rate(needs)
    return 1.0 if rate <= 0 else math.exp(-rate * timeout_s)


def latency_score(expected_s: float, slo_s: float) -> float:
    return 10.0 if expected_s <= slo_s else _clamp(10.0 * slo_s / expected_s)


def advise(needs: Needs, figures: Figures) -> Advice:
    """Score each hosting option for `needs` from `figures` and recommend one."""
    f = figures
    slo_s = needs.latency_slo_ms / 1000.0
    peak_rps = needs.requests_per_min / 60.0 * PEAK_FACTOR[needs.traffic]
    replicas_needed = max(1, math.ceil(peak_rps / max(f.replica_rps, 1e-9)))
    mean_replicas = max(1, math.ceil(needs.requests_per_min / 60.0 / max(f.replica_rps, 1e-9)))
    share = max(1, min(needs.tenants_sharing, f.pool_max_models))
    own_memory = f.cores_per_replica * f.core_memory_bytes
    reach = max(f.free_cores // max(f.cores_per_replica, 1), 0)
    per_model_up = 1.0 - cold_fraction(needs, f.idle_timeout_s) if needs.requests_per_min > 0 else 0.0
    plans = {
        "dedicated": {"memory": own_memory, "cold": 0.0, "ttft": f.ttft_p95_s, "reach": reach,
                      "core_hours": min(replicas_needed, max(reach, 1)) * f.cores_per_replica * HOURS_PER_MONTH},
        "shared": {"memory": f.pool_cores * f.core_memory_bytes / share,
                   "cold": cold_fraction(needs, min(f.pool_residency_s, f.idle_timeout_s)),
                   "ttft": f.ttft_p95_s * SHARED_CONTENTION, "reach": 1,
                   "core_hours": f.pool_cores * HOURS_PER_MONTH / share},
        "per_model": {"memory": own_memory, "cold": cold_fraction(needs, f.idle_timeout_s), "ttft": f.ttft_p95_s,
                      "reach": reach,
                      "core_hours": min(mean_replicas, max(reach, 1)) * f.cores_per_replica * HOURS_PER_MONTH
                      * per_model_up},
    }
    cheapest = min(p["core_hours"] for p in plans.values())
    options = []
    for name in OPTIONS:
        p = plans[name]
        overload = max(1.0, replicas_needed / max(p["reach"], 1))
        expected = p["ttft"] * overload
        if not needs.tolerates_cold_start and p["cold"] > COLD_TAIL:
            expected += f.cold_start_s
        latency = latency_score(expected, slo_s)
        if needs.tolerates_cold_start:
            latency = _clamp(latency * (1.0 - COLD_PENALTY * p["cold"]))
        scores = {
            "model_size": size_score(f.replica_bytes, p["memory"]),
            "latency": latency,
            "isolation": ISOLATION[name],
            "cost": 10.0 if p["core_hours"] <= cheapest else _clamp(10.0 * cheapest / p["core_hours"]),
            "scalability": _clamp(ELASTICITY[name] * min(1.0, p["reach"] / replicas_needed)),
        }
        excluded = ""
        if scores["model_size"] <= 0:
            excluded = (f"the model needs {_gib(f.replica_bytes)} and this option gives a replica "
                        f"{_gib(p['memory'])}")
        elif needs.isolation_required and scores["isolation"] < ISOLATED_ENOUGH:
            excluded = "isolation is required and the shared pool runs other models on the same cores"
        elif not needs.tolerates_cold_start and p["cold"] > COLD_TAIL and expected > slo_s:
            excluded = (f"cold starts are not tolerated and {p['cold'] * 100:.1f} % of requests would meet one "
                        f"({f.cold_start_s:.1f} s, past the {needs.latency_slo_ms:g} ms SLO)")
        weighted = [k for k in FITNESS if k != "isolation" or needs.isolation_required]
        options.append(OptionScore(
            option=name, title=OPTION_TITLES[name], scores=scores, eligible=not excluded,
            excluded_because=excluded, total=round(sum(scores[k] for k in weighted), 2),
            figures={"memory_bytes": int(p["memory"]), "cold_start_fraction": round(p["cold"], 4),
                     "expected_ttft_p95_s": round(expected, 3), "core_hours_per_month": round(p["core_hours"], 1),
                     "cost_per_month": round(p["core_hours"] * f.price_per_core_hour, 2),
                     "replicas_needed": replicas_needed, "replicas_reachable": p["reach"],
                     "overload": round(overload, 2)},
        ))
    ranked = sorted((o for o in options if o.eligible),
                    key=lambda o: (-o.total, o.figures["core_hours_per_month"]))
    if not ranked:
        return Advice(needs, figures, options, "", "No option fits: " + "; ".join(
            f"{o.title}: {o.excluded_because}" for o in options))
    best = ranked[0]
    return Advice(needs, figures, options, best.option, _reason(best, ranked[1:], options, needs, f))


def _gib(n: float) -> str:
    return f"{n / 1024**3:.2f} GiB"


def _reason(best: OptionScore, others: list[OptionScore], options: list[OptionScore], needs: Needs,
            f: Figures) -> str:
    b = best.figures
    parts = [f"{best.title} scores {best.total:g}"]
    if others:
        parts[0] += " against " + ", ".join(f"{o.title.lower()} {o.total:g}" for o in others)
    excluded = [o for o in options if not o.eligible]
    if excluded:
        parts.append("; ".join(f"{o.title.lower()} is out: {o.excluded_because}" for o in excluded))
    parts.append(f"{b['core_hours_per_month']:g} core-hours a month"
                 + (f" (${b['cost_per_month']:g})" if f.price_per_core_hour else ""))
    if b["cold_start_fraction"] > 0:
        parts.append(f"about {b['cold_start_fraction'] * 100:.1f} % of requests at {needs.requests_per_min:g}/min "
                     f"({needs.traffic}) meet a cold start of {f.cold_start_s:.1f} s"
                     + (", which the tenant tolerates" if needs.tolerates_cold_start else ""))
    met = b["expected_ttft_p95_s"] * 1000 <= needs.latency_slo_ms
    parts.append(f"expected p95 TTFT {b['expected_ttft_p95_s'] * 1000:.0f} ms "
                 f"{'meets' if met else 'misses'} the {needs.latency_slo_ms:g} ms SLO")
    return ". ".join(p[0].upper() + p[1:] for p in parts) + "."
