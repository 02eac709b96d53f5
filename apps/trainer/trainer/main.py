"""``python -m trainer``: train one release into MODELFOLDER (docs/CONTRACTS.md, sections 1-3).

read -> split -> tune (validation) -> evaluate (test holdout) -> refit on all data -> write
model/, metrics.json, manifest.json, and complete.txt last. On failure, failed.txt with the
reason and a non-zero exit; a folder that already has complete.txt is left untouched.

Exit codes: 0 trained or already complete, 1 training failed (failed.txt written),
2 configuration error (failed.txt written when MODELFOLDER is usable).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
from threadpoolctl import threadpool_limits

import modelshare
from modelshare import COMPLETE, FAILED, MANIFEST, METRICS, MODEL_DIR, ConfigError, FolderState
from modelshare.layout import TMP_SUFFIX
from trainer import artifacts, config, families, sources
from trainer.metrics import K, Popularity, evaluate, means, paired_gain, per_user
from trainer.reading import DataError, read_interactions
from trainer.split import MIN_ITEMS, nested_holdout, sample_users
from trainer.tuning import tune

APP = "trainer"
OURS = {MODEL_DIR, METRICS, MANIFEST, COMPLETE, FAILED}
# Seeds of the independent random draws, derived from TRAIN_SEED.
SPLIT, TEST_USERS, VALIDATION_USERS = 1, 3, 4


class FolderError(RuntimeError):
    """MODELFOLDER holds something that is not a release: refuse to clear it."""


def log(event: str, **fields) -> None:
    modelshare.log_event(APP, event, **fields)


def protocol(seed: int, fraction: float, n_users: int) -> str:
    return (
        f"seeded per-user random holdout (TRAIN_SEED {seed}): each user with >= {MIN_ITEMS} distinct "
        f"items gives {fraction:.0%} of them (at least 1) to the test set; a validation set is carved "
        "the same way from the rest (never from the test set) and chooses the family and "
        f"hyperparameters by NDCG@{K}, a family other than plain ALS only if its paired per-user gain "
        "over the best plain ALS is above 0 at one-sided 95 % confidence; the chosen model and the "
        "popularity model, both fitted on the training rows minus validation, rank every item except "
        f"the user's training and validation items for {n_users} test users (a seeded sample of at most "
        "EVAL_MAX_USERS); the served model is the chosen one refitted on all rows"
    )


def _check_ours(folder: Path) -> None:
    if not folder.is_dir():
        return
    foreign = sorted(
        p.name for p in folder.iterdir() if p.name not in OURS and not p.name.endswith(TMP_SUFFIX)
    )
    if foreign:
        raise FolderError(
            f"MODELFOLDER {folder} holds {foreign[:5]}, which a release folder never has: refusing to "
            "clear it (MODELFOLDER must be the release's own folder, /mnt/models/<build>)"
        )


def _clear(folder: Path) -> None:
    """Start over: a folder without complete.txt is a crashed or failed attempt."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def train(settings: config.Settings) -> dict:
    started = clock = time.monotonic()

    def lap() -> float:
        nonlocal clock
        now = time.monotonic()
        seconds, clock = round(now - clock, 3), now
        return seconds

    pa.set_cpu_count(settings.threads)
    with tempfile.TemporaryDirectory(prefix="trainer-") as staging:
        location, files = sources.fetch(settings, Path(staging))
        log("fetch", source=location, files=[f.name for f in files], seconds=lap())
        data = read_interactions(files)
    matrix = data.matrix
    log(
        "read",
        rows_read=data.report["rows_read"],
        rows_rejected=data.report["rows_rejected"],
        n_users=matrix.shape[0],
        n_items=matrix.shape[1],
        n_interactions=matrix.nnz,
        seconds=lap(),
    )

    seed, fraction = settings.seed, settings.holdout_fraction
    train_part, test, fit_part, validation = nested_holdout(matrix, fraction, [seed, SPLIT])
    test_users = sample_users(test, settings.eval_max_users, [seed, TEST_USERS])
    validation_users = sample_users(validation, settings.eval_max_users, [seed, VALIDATION_USERS])
    if len(validation_users) == 0:
        raise DataError(
            f"too little data to evaluate a model: no user has enough distinct items (at least {MIN_ITEMS} "
            f"after the test holdout) among {matrix.shape[0]} users and {matrix.nnz} interactions"
        )
    log("split", test_users=len(test_users), validation_users=len(validation_users), seconds=lap())

    names = settings.families
    if "ease" in names and matrix.shape[1] > settings.ease_max_items:
        skipped = [n for n in names if n in ("ease", families.BLEND)]
        names = tuple(n for n in names if n not in skipped)
        for name in skipped:
            log(
                "skip-family",
                family=name,
                reason=f"{matrix.shape[1]} items > EASE_MAX_ITEMS {settings.ease_max_items}",
            )
    if not names:
        raise DataError(f"no model family applies: TRAIN_FAMILIES={','.join(settings.families)}")
    selection = tune(
        names,
        fit_part,
        fit_part,
        validation,
        validation_users,
        threads=settings.threads,
        seed=seed,
        max_trials=settings.tune_trials_per_family,
        budget_seconds=settings.tune_budget_seconds,
        log=log,
    )
    log(
        "tune",
        family=selection.family,
        params=selection.params,
        validation_ndcg=selection.validation_ndcg,
        best_over_plain_als=selection.record["best_over_plain_als"],
        seconds=lap(),
    )

    n_items = matrix.shape[1]
    card = {
        "family": selection.family,
        "params": selection.params,
        "n_users": matrix.shape[0],
        "n_items": n_items,
        "n_interactions": int(matrix.nnz),
        "scoring": "scores = item_vectors @ user_vector (row of user_vectors); seen items excluded; "
        "unknown users get popular",
    }
    for name in set(selection.models) - {selection.family, "als-plain"}:
        del selection.models[name]  # free what the evaluations do not need before the final fit
    # The served model is fitted on all rows with the whole machine (implicit's fits are threaded),
    # then its files are written while the tuned one is measured on the test holdout: the writes
    # wait on the disk and leave the CPU to the evaluation.
    final = families.fit(selection.family, selection.params, matrix, settings.threads, seed)
    log("refit", family=selection.family, seconds=lap())
    folder = settings.folder
    with ThreadPoolExecutor(max_workers=1) as background:
        written = background.submit(
            artifacts.write_served,
            folder,
            data.user_ids,
            data.item_ids,
            matrix,
            Popularity(matrix).scores,
            final,
            card,
            log,
        )
        model_per_user = per_user(selection.models[selection.family], test_users, train_part, test)
        model_metrics = means(model_per_user)
        popularity_metrics = evaluate(Popularity(fit_part), test_users, train_part, test)
        lift = (
            model_metrics["ndcg_at_k"] / popularity_metrics["ndcg_at_k"]
            if popularity_metrics["ndcg_at_k"]
            else None
        )
        log("evaluate", model=model_metrics, popularity=popularity_metrics, lift_ndcg=lift, seconds=lap())
        written.result()
    del final  # on disk now: free it (EASE: n_items^2) before the plain-ALS comparison
    log("write-files", seconds=lap())  # the wait left for the served files after the evaluation

    # The report that the selection beats the usual baseline: the best plain ALS on the same test.
    # After the final fit, so that its cost stays apart: it exists only because there is a selection.
    plain = None
    if "als-plain" in selection.models:
        plain_model = selection.models["als-plain"]
        plain_per_user = (
            model_per_user
            if selection.family == "als-plain"
            else per_user(plain_model, test_users, train_part, test)
        )
        plain = {
            "params": plain_model.params,
            "validation_ndcg": selection.record["families"]["als-plain"]["validation_ndcg"],
            "test": means(plain_per_user),
            "ndcg_gain": paired_gain(model_per_user["ndcg_at_k"], plain_per_user["ndcg_at_k"]),
        }
        log("compare-plain-als", test=plain["test"], ndcg_gain=plain["ndcg_gain"], seconds=lap())
    selection.models.clear()

    metrics = {
        "k": K,
        "model": model_metrics,
        "popularity": popularity_metrics,
        "lift_ndcg": round(lift, 6) if lift is not None else None,
        "protocol": protocol(seed, fraction, len(test_users)),
        "n_users": matrix.shape[0],
        "n_items": n_items,
        "n_interactions": int(matrix.nnz),
        "n_eval_users": len(test_users),
        "family": selection.family,
        "params": selection.params,
        "selection": {**selection.record, "winner": selection.family, "plain_als": plain},
    }
    modelshare.atomic_write_json(folder / METRICS, metrics)
    params = {
        "family": selection.family,
        "hyperparameters": selection.params,
        "seed": seed,
        "holdout_fraction": fraction,
        "families_considered": list(names),
        "tune_budget_seconds": settings.tune_budget_seconds,
        "tune_trials_per_family": settings.tune_trials_per_family,
        "eval_max_users": settings.eval_max_users,
        "ease_max_items": settings.ease_max_items,
    }
    modelshare.make_manifest(
        folder,
        build=settings.build,
        git_sha=settings.git_sha,
        params=params,
        data={"source": location, **data.report},
        trainer_image=settings.trainer_image,
    )
    log("write", seconds=lap())
    modelshare.mark_complete(folder, settings.build)
    log(
        "complete",
        build=settings.build,
        family=selection.family,
        lift_ndcg=metrics["lift_ndcg"],
        seconds=round(time.monotonic() - started, 3),
    )
    return metrics


def _fail(folder: Path, reason: str) -> None:
    try:
        modelshare.mark_failed(folder, reason)
    except OSError as exc:
        log("failed-marker-not-written", folder=str(folder), error=str(exc))


def main() -> int:
    folder_text = os.environ.get("MODELFOLDER", "").strip()
    folder = Path(folder_text) if folder_text else None
    try:
        folder, build = config.release_folder()
        if modelshare.folder_state(folder) is FolderState.COMPLETE:
            log("already-complete", build=build, folder=str(folder))
            return 0
        _check_ours(folder)
        _clear(folder)
    except ConfigError as exc:
        log("config-error", error=str(exc))
        if folder is not None and modelshare.folder_state(folder) is not FolderState.COMPLETE:
            try:
                _check_ours(folder)
                _fail(folder, f"configuration error: {exc}")
            except FolderError:
                pass
        return 2
    except (FolderError, OSError) as exc:
        log("config-error", error=str(exc))
        return 2

    try:
        settings = config.load()
    except ConfigError as exc:
        log("config-error", error=str(exc))
        _fail(folder, f"configuration error: {exc}")
        return 2
    secret = settings.blob.key if settings.blob else None

    def redact(text: str) -> str:
        return text.replace(secret, "***") if secret else text

    log(
        "start",
        build=build,
        folder=str(folder),
        source=str(settings.data_dir) if settings.data_dir else repr(settings.blob),
        families=list(settings.families),
        threads=settings.threads,
        seed=settings.seed,
        tune_budget_seconds=settings.tune_budget_seconds,
    )
    try:
        with threadpool_limits(settings.threads, "blas"):
            train(settings)
    except (DataError, sources.SourceError) as exc:
        reason = redact(str(exc))
        log("failed", build=build, reason=reason)
        _fail(folder, reason)
        return 1
    except Exception as exc:  # a bug or an exhausted machine: still tell the waiter why
        reason = redact(f"training failed unexpectedly: {type(exc).__name__}: {exc}")
        log("failed", build=build, reason=reason, traceback=redact(traceback.format_exc()))
        _fail(folder, reason)
        return 1
    return 0
