"""Strategies are pure: their choices on known states, their fairness, and the registry."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from semroute.backends.strategy import (
    BUILTIN_STRATEGIES,
    InstanceState,
    LatencyAware,
    LeastOutstanding,
    PowerOfTwo,
    QueueAwareStrategy,
    RoundRobin,
    Strategy,
    WeightedLatencyAware,
    WeightedLeastOutstanding,
    WeightedPowerOfTwo,
    WeightedRoundRobin,
    expected_wait,
    resolve_strategy,
)
from semroute.errors import ConfigError


def states(*specs: dict) -> list[InstanceState]:
    return [InstanceState(name=f"i{n}", limit=8, **spec) for n, spec in enumerate(specs)]


def tally(strategy: Strategy, sts: list[InstanceState], n: int = 4000, seed: int = 7) -> Counter[str]:
    rng = random.Random(seed)
    return Counter(sts[strategy.pick(sts, rng)].name for _ in range(n))


@pytest.mark.parametrize("name", sorted(BUILTIN_STRATEGIES))
def test_equal_instances_share_traffic_evenly(name: str) -> None:
    # The LiteLLM bug: least-busy with equal load sends everything to the first deployment.
    sts = states({}, {}, {}, {})
    counts = tally(resolve_strategy(name), sts)
    assert set(counts) == {"i0", "i1", "i2", "i3"}
    assert max(counts.values()) / min(counts.values()) < 1.2, counts


@pytest.mark.parametrize("name", sorted(BUILTIN_STRATEGIES))
def test_single_candidate_is_always_chosen(name: str) -> None:
    assert tally(resolve_strategy(name), states({"in_flight": 3}), n=20) == Counter({"i0": 20})


def test_round_robin_is_exact_rotation_and_ignores_weight() -> None:
    sts = states({"weight": 5.0}, {}, {})
    rr = RoundRobin()
    rng = random.Random(1)
    picks = [rr.pick(sts, rng) for _ in range(300)]
    assert Counter(picks) == Counter({0: 100, 1: 100, 2: 100})
    for k in range(0, 300, 3):  # every round of three visits each instance once
        assert sorted(picks[k : k + 3]) == [0, 1, 2]


def test_weighted_round_robin_is_proportional_and_smooth() -> None:
    sts = states({"weight": 3.0}, {"weight": 1.0})
    wrr = WeightedRoundRobin()
    rng = random.Random(1)
    picks = [wrr.pick(sts, rng) for _ in range(400)]
    assert Counter(picks) == Counter({0: 300, 1: 100})
    # Smooth: every round of four carries exactly one light pick (no bursts of the heavy one).
    assert all(picks[k : k + 4].count(1) == 1 for k in range(0, 400, 4))


def test_least_outstanding_picks_the_idlest() -> None:
    sts = states({"in_flight": 3}, {"in_flight": 1}, {"in_flight": 2})
    assert tally(LeastOutstanding(), sts, n=50) == Counter({"i1": 50})


def test_least_outstanding_counts_recent_failures_as_load() -> None:
    # A fast-failing instance has nothing in flight; it must not look like the idlest.
    sts = states({"in_flight": 0, "recent_failures": 3}, {"in_flight": 1})
    assert tally(LeastOutstanding(), sts, n=50) == Counter({"i1": 50})


def test_warm_instance_preferred_on_equal_load_only() -> None:
    sts = states({"in_flight": 1}, {"in_flight": 1, "model_loaded": True}, {"in_flight": 1})
    assert tally(LeastOutstanding(), sts, n=50) == Counter({"i1": 50})
    busier_warm = states({"in_flight": 0}, {"in_flight": 2, "model_loaded": True})
    assert tally(LeastOutstanding(), busier_warm, n=50) == Counter({"i0": 50})


def test_weighted_least_outstanding_divides_by_weight() -> None:
    # (2 + 1) / 4 = 0.75 beats (0 + 1) / 1 = 1.
    sts = states({"in_flight": 2, "weight": 4.0}, {"in_flight": 0, "weight": 1.0})
    assert tally(WeightedLeastOutstanding(), sts, n=50) == Counter({"i0": 50})


def test_power_of_two_never_picks_the_busiest_of_three() -> None:
    sts = states({"in_flight": 5}, {"in_flight": 1}, {"in_flight": 2})
    counts = tally(PowerOfTwo(), sts, n=3000)
    assert counts["i0"] == 0
    # i1 wins both pairs it is in (2/3 of draws); i2 wins only against i0 (1/3).
    assert 0.6 < counts["i1"] / 3000 < 0.73


def test_weighted_power_of_two_draws_by_weight() -> None:
    sts = states({"weight": 8.0}, {"weight": 1.0}, {"weight": 1.0})
    counts = tally(WeightedPowerOfTwo(), sts, n=3000)
    assert counts["i0"] > counts["i1"] + counts["i2"]


def test_latency_aware_trades_speed_against_queue() -> None:
    # limit 8: 0.1 s x (1 + 6/8) = 0.175 s beats an idle 0.5 s instance (free parallel slots).
    sts = states({"ewma_latency_s": 0.1, "in_flight": 6}, {"ewma_latency_s": 0.5})
    assert tally(LatencyAware(), sts, n=50) == Counter({"i0": 50})
    # 0.1 s x (1 + 8/8) = 0.2 s loses to an idle 0.15 s instance.
    sts = states({"ewma_latency_s": 0.1, "in_flight": 8}, {"ewma_latency_s": 0.15})
    assert tally(LatencyAware(), sts, n=50) == Counter({"i1": 50})
    # Recent failures multiply the expected time.
    sts = states({"ewma_latency_s": 0.1, "recent_failures": 2}, {"ewma_latency_s": 0.25})
    assert tally(LatencyAware(), sts, n=50) == Counter({"i1": 50})


def test_latency_aware_tries_unmeasured_instances() -> None:
    sts = states({"ewma_latency_s": 0.2}, {})
    counts = tally(LatencyAware(), sts, n=400)
    assert counts["i1"] > 100  # optimistic: unknown counts as the fastest known


def test_weighted_latency_aware_divides_by_weight() -> None:
    sts = states({"ewma_latency_s": 0.2, "weight": 4.0}, {"ewma_latency_s": 0.1})
    assert tally(WeightedLatencyAware(), sts, n=50) == Counter({"i0": 50})
    assert tally(LatencyAware(), sts, n=50) == Counter({"i1": 50})


def test_distribution_on_skewed_loads_favours_the_idle() -> None:
    sts = states({"in_flight": 0}, {"in_flight": 4}, {"in_flight": 4}, {"in_flight": 4})
    for name in ("least_outstanding", "power_of_two", "latency_aware"):
        counts = tally(resolve_strategy(name), sts, n=2000)
        assert counts["i0"] >= 2000 * 0.5, (name, counts)
    counts = tally(resolve_strategy("round_robin"), sts, n=2000)
    assert counts["i0"] == 500  # round-robin ignores load by definition


# ------------------------------------------------ queue-aware admission (shortest expected delay)


def fleet(slow_in_flight: int = 0, **slow: object) -> list[InstanceState]:
    """Two busy 0.1 s instances (5 slots each, all taken) and a 0.9 s one with free slots."""
    return [
        InstanceState(name="fast0", limit=5, in_flight=5, ewma_latency_s=0.1),
        InstanceState(name="fast1", limit=5, in_flight=5, ewma_latency_s=0.1),
        InstanceState(name="slow", limit=5, in_flight=slow_in_flight, ewma_latency_s=0.9, **slow),  # type: ignore[arg-type]
    ]


def test_expected_wait_sums_slot_rates_of_faster_busy_instances() -> None:
    # Two instances freeing 5 slots per 0.1 s each: 100 slots/s; 10 slots at 100/s answer in 0.1 s.
    wait_s, answer_s = expected_wait(fleet(), 0.9, ahead=9)  # type: ignore[misc]
    assert wait_s == pytest.approx(0.1) and answer_s == pytest.approx(0.1)
    assert expected_wait(fleet(), 0.1, ahead=0) is None  # nobody busy is faster than 0.1 s


def test_fast_busy_against_slow_free_waits() -> None:
    # Waiting: 1/100 s for a fast slot + 0.1 s = 0.11 s; margin 3 x 0.11 s < 0.9 s on the slow slot.
    assert LatencyAware().admit(fleet(), 0, 2.0, random.Random(0)) is None
    assert LatencyAware().admit(fleet(), 15, 2.0, random.Random(0)) is None  # 3 x (0.16 + 0.1) < 0.9


def test_long_queue_sends_work_to_the_slow_instance() -> None:
    # 25 ahead: 3 x (0.26 s wait + 0.1 s) > 0.9 s: waiting is no longer clearly better.
    assert LatencyAware().admit(fleet(), 25, 2.0, random.Random(0)) == 2
    assert LatencyAware(margin=1.0).admit(fleet(), 25, 2.0, random.Random(0)) is None  # pure SED waits longer


def test_a_slow_instances_last_slot_costs_more() -> None:
    # 0.9 s x (1 + 4/5) = 1.62 s for its fifth slot: 25 ahead still wait; 60 ahead do not.
    assert LatencyAware().admit(fleet(slow_in_flight=4), 25, 2.0, random.Random(0)) is None
    assert LatencyAware().admit(fleet(slow_in_flight=4), 60, 2.0, random.Random(0)) == 2


def test_no_time_left_takes_the_free_slot() -> None:
    la = LatencyAware()
    assert la.admit(fleet(), 0, 0.0, random.Random(0)) == 2  # the deadline has come
    assert la.admit(fleet(), 0, 0.005, random.Random(0)) == 2  # a fast slot is 0.01 s away: too late


def test_near_equal_instances_never_wait() -> None:
    # 0.2 s is less than 3 x 0.11 s: not worth waiting on noisy estimates.
    sts = fleet()[:2] + [InstanceState(name="mid", limit=5, ewma_latency_s=0.2)]
    assert LatencyAware().admit(sts, 0, 2.0, random.Random(0)) == 2
    assert LatencyAware(margin=1.5).admit(sts, 0, 2.0, random.Random(0)) is None
    with pytest.raises(ConfigError):
        LatencyAware(margin=0.5)


def test_admission_takes_free_fast_and_unmeasured_slots_and_waits_when_all_are_busy() -> None:
    la, rng = LatencyAware(), random.Random(0)
    sts = fleet()
    free_fast = [sts[0], InstanceState(name="fast1", limit=5, in_flight=2, ewma_latency_s=0.1), sts[2]]
    assert la.admit(free_fast, 0, 2.0, rng) == 1
    unmeasured = sts[:2] + [InstanceState(name="new", limit=5)]
    assert la.admit(unmeasured, 0, 2.0, rng) == 2  # never measured: try it
    assert la.admit(fleet(slow_in_flight=5), 0, 2.0, rng) is None
    # A busy fast instance that keeps failing is no reason to wait: 0.1 s x 5 = 0.5 s expected.
    flaky = [InstanceState(name="f", limit=5, in_flight=5, ewma_latency_s=0.1, recent_failures=4), sts[2]]
    assert la.admit(flaky, 0, 2.0, rng) == 1


def test_only_latency_aware_is_queue_aware() -> None:
    aware = {name for name, make in BUILTIN_STRATEGIES.items() if isinstance(make(), QueueAwareStrategy)}
    assert aware == {"latency_aware"}


class PickLast:
    name = "pick_last"

    def pick(self, states, rng):  # noqa: ANN001, ANN201 - a user's minimal strategy
        return len(states) - 1


def test_user_strategies_plug_in_as_objects_and_import_paths() -> None:
    custom = PickLast()
    assert resolve_strategy(custom) is custom
    by_path = resolve_strategy(f"{__name__}:PickLast")
    assert by_path.name == "pick_last"
    assert by_path.pick(states({}, {}), random.Random(0)) == 1


def test_names_give_fresh_objects() -> None:
    assert resolve_strategy("round_robin") is not resolve_strategy("round_robin")


@pytest.mark.parametrize("bad", ["fastest", "no_such_module_xyz:Thing", f"{__name__}:states_missing", 42])
def test_bad_strategy_specs_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError):
        resolve_strategy(bad)  # type: ignore[arg-type]


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        BUILTIN_STRATEGIES["mine"] = PickLast  # type: ignore[index]
