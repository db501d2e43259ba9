"""The hosting advisor's scoring (plain Python) and its page's figures from what the appliance measured."""
from __future__ import annotations

import pytest

from appliance.console.advisor import FITNESS, Figures, Needs, advise, cold_fraction, size_score

GIB = 1024**3


def small_model(**overrides) -> Figures:
    base = dict(replica_bytes=GIB // 2, core_memory_bytes=16 * GIB, cores_per_replica=1, free_cores=2, pool_cores=2,
                pool_max_models=8, idle_timeout_s=300, cold_start_s=3.0, ttft_p95_s=0.15, replica_rps=2.0,
                price_per_core_hour=0.38)
    return Figures(**{**base, **overrides})


def scores(advice) -> dict[str, dict[str, float]]:
    return {o.option: o.scores for o in advice.options}


def test_isolation_required_never_recommends_the_shared_pool():
    for rpm, traffic in ((600, "steady"), (0.5, "spiky"), (5, "steady")):
        advice = advise(Needs(isolation_required=True, requests_per_min=rpm, traffic=traffic, tenants_sharing=8),
                        small_model())
        assert advice.recommended in ("dedicated", "per_model")
        shared = next(o for o in advice.options if o.option == "shared")
        assert not shared.eligible and "isolation" in shared.excluded_because


def test_spiky_low_traffic_that_tolerates_cold_start_scales_to_zero():
    advice = advise(Needs(traffic="spiky", requests_per_min=0.5, tolerates_cold_start=True), small_model())
    assert advice.recommended == "per_model"
    per_model = next(o for o in advice.options if o.option == "per_model")
    dedicated = next(o for o in advice.options if o.option == "dedicated")
    assert per_model.figures["core_hours_per_month"] < dedicated.figures["core_hours_per_month"] / 3
    assert "cold start of 3.0 s" in advice.reason and "tolerates" in advice.reason


def test_the_same_traffic_without_tolerance_of_cold_starts_keeps_cores_warm():
    advice = advise(Needs(traffic="spiky", requests_per_min=0.5, tolerates_cold_start=False, latency_slo_ms=500),
                    small_model())
    assert advice.recommended == "dedicated"
    assert scores(advice)["per_model"]["latency"] < 5 <= scores(advice)["dedicated"]["latency"]


def test_small_models_of_many_tenants_share_a_pool():
    advice = advise(Needs(requests_per_min=5, tenants_sharing=8, latency_slo_ms=1000), small_model())
    assert advice.recommended == "shared"
    assert scores(advice)["shared"]["cost"] == 10.0 and scores(advice)["dedicated"]["cost"] < 5


def test_a_model_that_does_not_fit_the_pools_share_is_kept_out_of_it():
    advice = advise(Needs(requests_per_min=5, tenants_sharing=8), small_model(replica_bytes=12 * GIB))
    shared = next(o for o in advice.options if o.option == "shared")
    assert shared.scores["model_size"] == 0 and not shared.eligible and "GiB" in shared.excluded_because
    assert advice.recommended != "shared"


def test_a_model_too_big_for_every_option_gets_no_recommendation():
    advice = advise(Needs(), small_model(replica_bytes=40 * GIB))
    assert advice.recommended == "" and advice.reason.startswith("No option fits")


def test_heavy_traffic_past_the_free_cores_misses_the_slo_and_says_so():
    advice = advise(Needs(requests_per_min=600, latency_slo_ms=300), small_model())
    best = next(o for o in advice.options if o.option == advice.recommended)
    assert best.figures["replicas_needed"] == 8 and best.figures["overload"] == 4
    assert "misses the 300 ms SLO" in advice.reason


def test_scores_are_bounded_and_cover_the_five_fitness_functions():
    for needs in (Needs(), Needs(traffic="spiky", requests_per_min=0), Needs(isolation_required=True)):
        for option in advise(needs, small_model()).options:
            assert set(option.scores) == set(FITNESS)
            assert all(0 <= v <= 10 for v in option.scores.values())


def test_cold_fraction_and_size_score_follow_their_models():
    assert cold_fraction(Needs(requests_per_min=60), 300) < 1e-100  # one a second never idles 5 minutes
    assert cold_fraction(Needs(requests_per_min=0), 300) == 1.0
    assert cold_fraction(Needs(traffic="spiky", requests_per_min=60), 10) > cold_fraction(Needs(requests_per_min=60), 10)
    assert size_score(GIB, 4 * GIB) == 10 and size_score(3 * GIB, 4 * GIB) == 5 and size_score(5 * GIB, 4 * GIB) == 0


def test_needs_refuse_nonsense():
    with pytest.raises(ValueError, match="traffic"):
        Needs(traffic="bursty")
    with pytest.raises(ValueError, match="latency_slo_ms"):
        Needs(latency_slo_ms=0)
