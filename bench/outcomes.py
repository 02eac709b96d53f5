"""The canary's outcome test (monitoring.outcomes) in numbers: how much traffic it needs. 1,000
simulated canaries per case, click-through 5 % per list on the champion, a look every 500 lists
per release (as often as a canary command run every minute at 8 lists a second sees), each
canary stopped at its first decision; the fixed-sample test of the same power is the baseline.
"""

from __future__ import annotations

import math

import numpy as np

from monitoring.outcomes import HOLD, PROMOTE, ROLLBACK, Design, verdicts

CANARIES = 1000
CTR = 0.05
STEP = 500  # lists per release between looks
HORIZONS = (20_000, 40_000, 55_000, 80_000)


def simulate(ctr_canary: float, horizon: int, seed: int) -> tuple[dict[str, float], float]:
    """Share of canaries promoted, held and rolled back by `horizon` lists per release, and the
    median lists per release at which they were decided."""
    rng = np.random.default_rng(seed)
    looks = horizon // STEP
    champion = rng.binomial(STEP, CTR, size=(CANARIES, looks)).cumsum(axis=1)
    canary = rng.binomial(STEP, ctr_canary, size=(CANARIES, looks)).cumsum(axis=1)
    lists = STEP * np.arange(1, looks + 1)
    every = verdicts(champion, lists, canary, lists, Design())
    decided = every != HOLD
    first = decided.argmax(axis=1)
    final = np.where(decided.any(axis=1), every[np.arange(CANARIES), first], HOLD)
    when = (first[decided.any(axis=1)] + 1) * STEP
    shares = {
        name: float((final == code).mean()) for name, code in (("promote", PROMOTE), ("rollback", ROLLBACK))
    }
    return shares, float(np.median(when)) if when.size else math.nan


def fixed_sample(relative: float, power: float = 0.8, alpha: float = 0.05) -> float:
    """Lists per release a one-look two-sided z-test on the log rate ratio needs (normal quantiles)."""
    z_alpha, z_power = 1.959964, {0.8: 0.841621}[power]
    theta = abs(math.log(1 + relative))
    variance_per_list = 1 / CTR + 1 / (CTR * (1 + relative))
    return (z_alpha + z_power) ** 2 * variance_per_list / theta**2


def main() -> str:
    design = Design()
    lines = [
        f"Design: alpha {design.alpha}, margin {design.margin:.0%}, tau {design.tau}, at least "
        f"{design.min_conversions:.0f} conversions a side; {CANARIES:,} canaries per case, a look every "
        f"{STEP} lists per release, champion click-through {CTR:.0%}.",
        "",
        "| canary's true click-through | by lists per release | promoted | rolled back "
        "| median lists to decide |",
        "|---|---:|---:|---:|---:|",
    ]
    results = {}
    for name, relative in (("equal (A/A)", 0.0), ("10 % lower", -0.1), ("10 % higher", 0.1)):
        for horizon in HORIZONS:
            shares, median = simulate(CTR * (1 + relative), horizon, seed=horizon + int(relative * 100))
            results[(name, horizon)] = shares
            lines.append(
                f"| {name} | {horizon:,} | {shares['promote']:.1%} | {shares['rollback']:.1%} | "
                f"{'—' if math.isnan(median) else f'{median:,.0f}'} |"
            )
    needed = next((h for h in HORIZONS if results[("10 % lower", h)]["rollback"] >= 0.8), float("nan"))
    fixed = fixed_sample(-0.1)
    worst_false = max(results[("equal (A/A)", h)]["rollback"] for h in HORIZONS)
    lines += [
        "",
        f"A 10 % drop is rolled back with power >= 80 % by **{needed:,} lists per release** (about "
        f"{needed * CTR:,.0f} clicks on the champion's lists, {needed * CTR * 0.9:,.0f} on the canary's); "
        f"a single fixed-size test with the same power needs "
        f"{fixed:,.0f} but may be looked at once only: the sequential test's price for looking every "
        f"{STEP} lists is {needed / fixed:.1f}x the traffic. With equal click-through, at most "
        f"**{worst_false:.1%}** of the canaries are rolled back (alpha {design.alpha:.0%}).",
    ]
    return "\n".join(lines)
