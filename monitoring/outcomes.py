"""Did users like the canary? Its conversion rate against the champion's, by a sequential test that
stays valid however often it is looked at (monitoring.canary runs it at every look).

The data, per release, over the canary's life so far: `lists` served (users answered) and
`conversions` (feedback events of one kind, e.g. clicks, counted for the build that served the
list). The quantity judged is the log rate ratio theta = log(rate_canary / rate_champion), with
rate = conversions / lists. Its estimate and variance (delta method, counts taken as Poisson,
which also allows several clicks on one list and is never smaller than the binomial variance):

    theta_hat = log(x_B / n_B) - log(x_A / n_A)        V = 1 / x_A + 1 / x_B

The test is the mixture sequential probability ratio test (mSPRT; Robbins 1970, as used for
always-valid A/B testing by Johari, Pekelis and Walsh 2017): for a hypothesised theta_0, the
likelihood ratio of theta_hat ~ N(theta, V), mixed over theta ~ N(theta_0, tau^2), is

    Lambda(theta_0) = sqrt(V / (V + tau^2)) * exp(tau^2 (theta_hat - theta_0)^2 / (2 V (V + tau^2)))

a nonnegative martingale under theta_0, so by Ville's inequality P(Lambda ever >= 1/alpha) <= alpha,
whatever the number and timing of looks. The theta_0 it does not reject form an always-valid
confidence sequence:

    theta_hat +- sqrt(2 V (V + tau^2) / tau^2 * (log(1 / alpha) + log((V + tau^2) / V) / 2))

The decision at each look: **rollback** when the whole interval is below 0 (the canary converts
less, with confidence: with equal true rates this happens at any look with probability <= alpha);
**promote** when the whole interval is above log(1 - margin) (the canary is not worse by more than
the margin; with a canary truly worse by the margin, <= alpha); **hold** otherwise, and while
either release has fewer than `min_conversions` conversions (the normal approximation needs some
counts). tau is the size of effect the test is tuned to detect fastest (0.1: about 10 %).
tests/monitoring/test_outcomes.py simulates 1,000 canaries to check the error rates and the power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PROMOTE, HOLD, ROLLBACK = 1, 0, -1


@dataclass(frozen=True)
class Design:
    alpha: float = 0.05  # error rate of each decision, over all looks
    margin: float = 0.05  # the canary may convert this much less (relative) and still be promoted
    tau: float = 0.1  # mixture spread on the log ratio: the effect size the test detects fastest
    min_conversions: float = 50.0  # fewer on either side: hold


@dataclass(frozen=True)
class Comparison:
    action: str  # promote | hold | rollback
    ratio: float  # the canary's conversion rate over the champion's (NaN without data)
    low: float  # always-valid (1 - alpha) interval of the ratio
    high: float
    reason: str


def interval(x_a, n_a, x_b, n_b, design: Design):
    """(theta_hat, radius) of the always-valid confidence sequence; numpy arrays welcome."""
    x_a, n_a, x_b, n_b = (np.asarray(v, dtype=np.float64) for v in (x_a, n_a, x_b, n_b))
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.log(x_b / n_b) - np.log(x_a / n_a)
        v = 1.0 / x_a + 1.0 / x_b
        tau2 = design.tau**2
        radius = np.sqrt(
            2 * v * (v + tau2) / tau2 * (math.log(1 / design.alpha) + 0.5 * np.log((v + tau2) / v))
        )
    return theta, radius


def verdicts(x_a, n_a, x_b, n_b, design: Design) -> np.ndarray:
    """PROMOTE, HOLD or ROLLBACK for each look (element-wise)."""
    theta, radius = interval(x_a, n_a, x_b, n_b, design)
    enough = (np.minimum(x_a, x_b) >= design.min_conversions) & (np.asarray(n_a) > 0) & (np.asarray(n_b) > 0)
    out = np.full(np.shape(theta), HOLD, dtype=np.int8)
    out[enough & (theta - radius > math.log(1 - design.margin))] = PROMOTE
    out[enough & (theta + radius < 0)] = ROLLBACK  # worse with confidence wins over "within the margin"
    return out


def compare(
    champion_lists: float,
    champion_conversions: float,
    canary_lists: float,
    canary_conversions: float,
    design: Design,
) -> Comparison:
    verdict = int(verdicts(champion_conversions, champion_lists, canary_conversions, canary_lists, design))
    theta, radius = (
        float(v)
        for v in interval(champion_conversions, champion_lists, canary_conversions, canary_lists, design)
    )
    finite = math.isfinite(theta) and math.isfinite(radius)
    ratio, low, high = (
        (math.exp(theta), math.exp(theta - radius), math.exp(theta + radius)) if finite else (math.nan,) * 3
    )
    rates = (
        f"conversion rate {_share(canary_conversions, canary_lists)} vs champion "
        f"{_share(champion_conversions, champion_lists)}"
    )
    level = f"{1 - design.alpha:.0%}"
    if min(champion_conversions, canary_conversions) < design.min_conversions:
        reason = (
            f"too few conversions to compare outcomes: canary {canary_conversions:.0f}, champion "
            f"{champion_conversions:.0f} (need {design.min_conversions:.0f} each)"
        )
    else:
        where = f"ratio {ratio:.3f}, always-valid {level} interval {low:.3f} to {high:.3f}"
        if verdict == ROLLBACK:
            reason = f"{rates}: worse with confidence ({where})"
        elif verdict == PROMOTE:
            reason = f"{rates}: not worse than the champion by more than {design.margin:.0%} ({where})"
        else:
            bounds = f"promote above {1 - design.margin:.3f}, roll back below 1"
            reason = f"{rates}: not decided yet ({where}; {bounds})"
    action = {PROMOTE: "promote", HOLD: "hold", ROLLBACK: "rollback"}[verdict]
    return Comparison(action, ratio, low, high, reason)


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.2%}" if whole > 0 else "n/a"
