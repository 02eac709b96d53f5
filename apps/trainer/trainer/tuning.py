"""Choosing a family and its hyperparameters on a validation split, within a time budget.

Each family climbs its own ladders (families.SPACES): its starting settings first, then single
steps from the best setting so far (one ladder rung up or down, or another choice), moving as
soon as a step improves validation NDCG@k and trying the same direction again first. A family
stops when no step improves (converged) or after TUNE_TRIALS_PER_FAMILY trials. Families take
turns, one trial each, so a budget cut leaves every family with comparable effort. The first
round always runs (every family needs one fitted model); after it, no new trial starts once
TUNE_BUDGET_SECONDS have passed. Without a budget cut, the search is a pure function of the
data and the seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from trainer import families
from trainer.metrics import evaluate


def _key(family: str, params: dict) -> tuple:
    settings = {name: value for name, value in params.items() if not name.startswith("_")}
    return tuple(sorted(families.canonical(family, settings).items()))


@dataclass
class Climb:
    family: str
    max_trials: int
    queue: list = field(default_factory=list)
    tried: set = field(default_factory=set)
    best: tuple | None = None  # (score, params)
    trials: int = 0
    starts_left: int = 0
    converged: bool = False  # no untried step from the best setting is left

    def __post_init__(self):
        starts = families.SPACES[self.family]["starts"]
        self.queue = [dict(s) for s in starts]
        self.starts_left = len(starts)

    def propose(self) -> dict | None:
        if self.trials >= self.max_trials:
            return None
        while self.queue:
            params = self.queue.pop(0)
            if _key(self.family, params) not in self.tried:
                self.tried.add(_key(self.family, params))
                self.trials += 1
                return params
        self.converged = True
        return None

    def report(self, params: dict, score: float, step: tuple | None) -> None:
        self.starts_left = max(0, self.starts_left - 1)
        improved = self.best is None or score > self.best[0]
        if improved:
            self.best = (score, params)
        if self.starts_left:
            return
        if improved or step is None:  # a new best, or the starts just finished: step from the best
            self.queue = self.steps(self.best[1], first=step if improved else None)

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
        out = []
        for name, direction, value in moves:
            candidate = {**params, name: value, "_step": (name, direction)}
            out.append(candidate)
        return out


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
    climbs = {name: Climb(name, max_trials) for name in names}
    best_models: dict = {}
    trials = []
    started = time.monotonic()
    active = list(names)
    budget_cut = False
    first_round = True
    while active:
        for name in list(active):
            if not first_round and time.monotonic() - started >= budget_seconds:
                budget_cut = True
                active = []
                break
            proposal = climbs[name].propose()
            if proposal is None:
                active.remove(name)
                continue
            step = proposal.pop("_step", None)
            params = families.canonical(name, proposal)
            clock = time.monotonic()
            try:
                model = families.fit(name, params, matrix, threads, seed)
                score = evaluate(model, users, seen, relevant)["ndcg_at_k"]
            except (ArithmeticError, MemoryError, ValueError, np.linalg.LinAlgError) as exc:
                log("tune-trial-failed", family=name, params=params, error=f"{type(exc).__name__}: {exc}")
                score, model = float("-inf"), None
            seconds = round(time.monotonic() - clock, 3)
            previous_best = climbs[name].best
            climbs[name].report(proposal, score, step)
            if model is not None and (previous_best is None or score > previous_best[0]):
                best_models[name] = model
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
        first_round = False
    if not best_models:
        raise RuntimeError("every candidate model failed to fit; see the tune-trial-failed log lines")
    ranked = sorted(best_models, key=lambda name: (-climbs[name].best[0], names.index(name)))
    winner = ranked[0]
    record = {
        "objective": "ndcg_at_k on the validation split",
        "families": {
            name: {
                "params": families.canonical(name, climbs[name].best[1]) if name in best_models else None,
                "validation_ndcg": climbs[name].best[0] if name in best_models else None,
                "trials": climbs[name].trials,
                "converged": climbs[name].converged,
            }
            for name in names
        },
        "trials": trials,
        "budget_seconds": budget_seconds,
        "budget_exhausted": budget_cut,
        "seconds": round(time.monotonic() - started, 3),
    }
    return Selection(
        winner, families.canonical(winner, climbs[winner].best[1]), climbs[winner].best[0], best_models, record
    )
