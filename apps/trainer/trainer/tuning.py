"""Choosing a family and its hyperparameters on a validation split, within a time budget.

Each family climbs its own ladders (families.SPACES): its starting settings first, then single
steps (one ladder rung up or down, or another choice) on BRANCHES climbs in turn, each from one of
the best starts, moving as soon as a step improves the branch's validation NDCG@k and trying the
same direction again first. Two branches because a single climb stays in the basin of the best
start: on MovieLens 1M the best plain ALS pairs more factors with stronger regularization and a
higher alpha, on 100k the reverse, and only one of them is the better start. A family stops when
no branch has an untried step (converged) or after TUNE_TRIALS_PER_FAMILY trials. Families take
turns, one trial each, so a budget cut leaves every family with comparable effort. The first
round always runs (every family needs one fitted model); after it, no new trial starts once
TUNE_BUDGET_SECONDS have passed. Without a budget cut, the search is a pure function of the
data and the seed. Then the blend (families.BLEND) tries its weights on the best EASE and the best
ALS already fitted: each trial is one scoring pass, no fit.

The family with the best validation NDCG is served only if it beats the best plain ALS, the usual
baseline, clearly: its paired per-user gain on the validation users is above zero at one-sided 95 %
confidence (the lower end of the two-sided 90 % interval). Otherwise plain ALS is served. With many
candidates and trials, the best validation score is partly luck (on MovieLens 100k, an EASE 0.2 %
ahead on validation was 2.7 % behind on test).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from trainer import families
from trainer.metrics import means, paired_gain, per_user


def _key(family: str, params: dict) -> tuple:
    settings = {name: value for name, value in params.items() if not name.startswith("_")}
    return tuple(sorted(families.canonical(family, settings).items()))


BRANCHES = 2  # climbs run from this many of the best starts, in turn
# Two-sided level of the interval whose lower end must be above 0 to serve a family over plain ALS:
# 90 % two-sided is 95 % one-sided, the level for "better", a one-sided question.
CONFIDENCE = 0.90


@dataclass
class Branch:
    best: tuple  # (score, params) of this climb
    queue: list  # untried steps from its best


@dataclass
class Climb:
    family: str
    max_trials: int
    queue: list = field(default_factory=list)  # starts not yet tried
    tried: set = field(default_factory=set)
    best: tuple | None = None  # (score, params) over every trial
    trials: int = 0
    starts: list = field(default_factory=list)  # (score, params) of each start tried
    branches: list = field(default_factory=list)
    turn: int = 0
    converged: bool = False  # no untried step is left on any branch

    def __post_init__(self):
        self.queue = [dict(s) for s in families.SPACES[self.family]["starts"]]

    def propose(self) -> dict | None:
        if self.trials >= self.max_trials:
            return None
        candidates = [(None, self.queue)] if self.queue else []
        order = range(len(self.branches))
        candidates += [(i, self.branches[i].queue) for i in [*order[self.turn :], *order[: self.turn]]]
        for branch, queue in candidates:
            while queue:
                params = queue.pop(0)
                if _key(self.family, params) not in self.tried:
                    self.tried.add(_key(self.family, params))
                    self.trials += 1
                    if branch is not None:
                        self.turn = (branch + 1) % len(self.branches)
                    return {**params, "_branch": branch}
        self.converged = True
        return None

    def report(self, params: dict, score: float, step: tuple | None, branch: int | None) -> None:
        """``params`` without the proposal's tags, which come as ``step`` and ``branch``."""
        if self.best is None or score > self.best[0]:
            self.best = (score, params)
        if branch is None:  # a start
            self.starts.append((score, params))
            if not self.queue:  # all starts tried: climb from the best few
                ranked = sorted(self.starts, key=lambda start: -start[0])[:BRANCHES]
                self.branches = [Branch(start, self.steps(start[1], first=None)) for start in ranked]
            return
        climb = self.branches[branch]
        if score > climb.best[0]:  # a new best on this branch: step on from it, same direction first
            climb.best = (score, params)
            climb.queue = self.steps(params, first=step)

    def steps(self, params: dict, first: tuple | None) -> list[dict]:
        """Settings one step from ``params``; ``first`` = (name, direction) that just paid off."""
        ladders = families.SPACES[self.family]["ladders"]
        moves = []
        for name, ladder in ladders.items():
            if name not in params or params[name] not in ladder:
                continue
            at = ladder.index(params[name])
            if isinstance(params[name], str):
                moves += [(name, 0, value) for value in ladder if value != params[name]]
            else:
                moves += [(name, d, ladder[at + d]) for d in (-1, 1) if 0 <= at + d < len(ladder)]
        if first is not None:
            moves.sort(key=lambda move: (move[0], move[1]) != first)  # stable: keeps ladder order
        return [{**params, name: value, "_step": (name, direction)} for name, direction, value in moves]


def clear_winner(best: str, ndcg: dict[str, np.ndarray]) -> tuple[str, dict | None]:
    """``best`` if it clearly beats plain ALS on the validation users, else plain ALS; and the paired
    NDCG gain of ``best`` over plain ALS that decided it (None without a plain ALS to compare).
    ``ndcg``: family -> per-user validation NDCG of its best model."""
    if best == "als-plain" or "als-plain" not in ndcg:
        return best, None
    gain = paired_gain(ndcg[best], ndcg["als-plain"], CONFIDENCE)
    return (best if gain["interval"][0] > 0 else "als-plain"), {"family": best, **gain}


@dataclass
class Selection:
    family: str
    params: dict
    validation_ndcg: float
    models: dict  # family -> best Servable (fitted on the tuning split)
    record: dict  # what metrics.json says about the search


def tune(
    names: tuple[str, ...],
    matrix,
    seen,
    relevant,
    users: np.ndarray,
    *,
    threads: int,
    seed: int,
    max_trials: int,
    budget_seconds: float,
    log,
) -> Selection:
    climbs = {name: Climb(name, max_trials) for name in names if name != families.BLEND}
    best: dict = {}  # family -> (validation NDCG, params) of its best trial
    best_models: dict = {}
    best_ndcg: dict = {}  # family -> per-user validation NDCG of its best model, for clear_winner
    trials = []
    started = time.monotonic()

    def trial(name: str, params: dict, make) -> float:
        """Fit (``make()``) and score one setting; keep it if it is the family's best so far."""
        clock = time.monotonic()
        try:
            model = make()
            values = per_user(model, users, seen, relevant)
            score = means(values)["ndcg_at_k"]
        except (ArithmeticError, MemoryError, ValueError, np.linalg.LinAlgError) as exc:
            log("tune-trial-failed", family=name, params=params, error=f"{type(exc).__name__}: {exc}")
            score, model = float("-inf"), None
        seconds = round(time.monotonic() - clock, 3)
        if model is not None and (name not in best or score > best[name][0]):
            best[name], best_models[name], best_ndcg[name] = (score, params), model, values["ndcg_at_k"]
        shown = score if np.isfinite(score) else None  # JSON has no -inf
        trials.append({"family": name, "params": params, "validation_ndcg": shown, "seconds": seconds})
        log(
            "tune-trial",
            trial=len(trials),
            family=name,
            params=params,
            validation_ndcg=shown,
            seconds=seconds,
            elapsed=round(time.monotonic() - started, 3),
            budget_seconds=budget_seconds,
        )
        return score

    def out_of_time() -> bool:
        return time.monotonic() - started >= budget_seconds

    active = list(climbs)
    budget_cut = False
    first_round = True
    while active:
        for name in list(active):
            if not first_round and out_of_time():
                budget_cut = True
                active = []
                break
            proposal = climbs[name].propose()
            if proposal is None:
                active.remove(name)
                continue
            step, branch = proposal.pop("_step", None), proposal.pop("_branch", None)
            params = families.canonical(name, proposal)
            score = trial(name, params, partial(families.fit, name, params, matrix, threads, seed))
            climbs[name].report(proposal, score, step, branch)
        first_round = False
    if not best_models:
        raise RuntimeError("every candidate model failed to fit; see the tune-trial-failed log lines")

    # The blend reuses the best EASE and ALS already fitted: a trial is a weight, scored without a fit.
    factor = max(
        ("als-plain", "als"), key=lambda name: best[name][0] if name in best_models else float("-inf")
    )
    if families.BLEND in names and "ease" in best_models and factor in best_models:
        for weight in families.BLEND_WEIGHTS[:max_trials]:
            if out_of_time():
                budget_cut = True
                break
            params = {"weight": weight, "ease": best["ease"][1], "als": {"family": factor, **best[factor][1]}}
            blend = partial(families.blend, best_models["ease"], best_models[factor], weight, seed, params)
            trial(families.BLEND, params, blend)

    ranked = sorted(best_models, key=lambda name: (-best[name][0], names.index(name)))
    winner, gain = clear_winner(ranked[0], best_ndcg)
    counts = {name: sum(entry["family"] == name for entry in trials) for name in names}
    record = {
        "objective": "ndcg_at_k on the validation split",
        "families": {
            name: {
                "params": best[name][1] if name in best_models else None,
                "validation_ndcg": best[name][0] if name in best_models else None,
                "trials": counts[name],
                "converged": climbs[name].converged
                if name in climbs
                else counts[name] == len(families.BLEND_WEIGHTS),
            }
            for name in names
        },
        "trials": trials,
        "best_over_plain_als": gain,
        "budget_seconds": budget_seconds,
        "budget_exhausted": budget_cut,
        "seconds": round(time.monotonic() - started, 3),
    }
    return Selection(winner, best[winner][1], best[winner][0], best_models, record)
