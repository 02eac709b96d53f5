"""The outcome test of monitoring.outcomes, simulated: 1,000 canaries each, synthetic click counts
over a sequence of looks (no traffic, no sleeping), the first decision of each canary counted.

The traffic: a click-through of 5 % per list on the champion. At that rate a 10 % relative drop
(5 % -> 4.5 %) is rolled back with power >= 80 % within 55,000 lists per release (about 2,750
clicks each: one list for each of the 50,000 users of bench.serving's model, and a tenth more).
"""

import math

import numpy as np
import pytest

from monitoring.outcomes import PROMOTE, ROLLBACK, Design, compare, verdicts

CANARIES = 1000
CTR = 0.05


def first_decisions(ctr_champion: float, ctr_canary: float, lists_per_look: int, looks: int, seed: int):
    """The first non-hold verdict of each simulated canary (HOLD when it never decided), the
    champion and canary getting `lists_per_look` lists each between looks."""
    rng = np.random.default_rng(seed)
    champion = rng.binomial(lists_per_look, ctr_champion, size=(CANARIES, looks)).cumsum(axis=1)
    canary = rng.binomial(lists_per_look, ctr_canary, size=(CANARIES, looks)).cumsum(axis=1)
    lists = lists_per_look * np.arange(1, looks + 1)
    every = verdicts(champion, lists, canary, lists, Design())
    decided = every != 0
    first = decided.argmax(axis=1)
    return np.where(decided.any(axis=1), every[np.arange(CANARIES), first], 0)


@pytest.mark.parametrize(
    "ctr, lists_per_look, looks",
    [
        (CTR, 10, 5000),  # a look every 10 lists: 5,000 looks
        (CTR, 100, 1000),  # up to 100,000 lists each
        (CTR, 2000, 100),  # few, large looks
        (0.01, 200, 1000),  # a rarer event (purchases)
    ],
)
def test_equal_click_through_is_falsely_rolled_back_at_most_5_percent_however_often_it_looks(
    ctr, lists_per_look, looks
):
    final = first_decisions(ctr, ctr, lists_per_look, looks, seed=lists_per_look)
    assert (final == ROLLBACK).mean() <= 0.05


def test_a_10_percent_drop_is_rolled_back_with_power_80_percent_within_55000_lists():
    final = first_decisions(CTR, CTR * 0.9, 500, 55_000 // 500, seed=11)
    assert (final == ROLLBACK).mean() >= 0.80
    assert (final == PROMOTE).mean() <= 0.05  # worse than the 5 % margin: (almost) never promoted


def test_a_10_percent_lift_is_promoted():
    final = first_decisions(CTR, CTR * 1.1, 500, 55_000 // 500, seed=12)
    assert (final == PROMOTE).mean() >= 0.95 and (final == ROLLBACK).mean() == 0


def test_a_canary_worse_by_exactly_the_margin_is_promoted_at_most_5_percent():
    final = first_decisions(CTR, CTR * 0.95, 1000, 200, seed=13)
    assert (final == PROMOTE).mean() <= 0.05


def test_the_comparison_explains_itself():
    design = Design()
    worse = compare(100_000, 5_000, 100_000, 4_000, design)
    assert worse.action == "rollback" and worse.high < 1 and worse.low < worse.ratio == pytest.approx(0.8)
    assert "4.00% vs champion 5.00%" in worse.reason and "worse with confidence" in worse.reason
    early = compare(1_000, 40, 1_000, 30, design)
    assert early.action == "hold" and "too few conversions" in early.reason
    unclear = compare(10_000, 500, 10_000, 480, design)
    assert unclear.action == "hold" and unclear.low < 0.95 < 1 < unclear.high
    none = compare(0, 0, 0, 0, design)
    assert none.action == "hold" and math.isnan(none.ratio)
