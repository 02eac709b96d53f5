"""``python -m trainer``: train one release into MODELFOLDER (docs/CONTRACTS.md, sections 1-3).

read -> check the data is enough -> split -> tune (validation) -> evaluate (test holdout; beside the
champion when there is one) -> refit on all data -> write model/, metrics.json, manifest.json and
complete.txt into a private staging folder -> publish it as MODELFOLDER in one rename -> decide the
quality gate. On failure, a folder with failed.txt and the reason; a folder that already has
complete.txt is never changed. Every outcome also goes to the termination message, which
pulumi-kubernetes shows when the Job fails.

Exit codes: 0 trained, or already complete for this release and above the gate; 1 training failed
(failed.txt); 2 configuration error (failed.txt when MODELFOLDER is usable); 3 trained but below
the quality gate (the folder is complete: the model and its numbers stay for a look); 4 MODELFOLDER
is complete but holds another release's model (other git sha or trainer image).
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
from modelshare import METRICS, ConfigError, FolderState, PublishError
from modelshare.gate import evaluate as evaluate_gate
from trainer import artifacts, champion, config, drift, families, modelcard, sources
from trainer.metrics import K, Popularity, means, paired_gain, per_user
from trainer.outcome import (
    CONFIG,
    GATE,
    TRAINED,
    Stop,
    already_complete,
    fail,
    finish,
    log,
    training_failed,
    with_summary,
)
from trainer.reading import DataError, read_interactions
from trainer.split import MIN_ITEMS, nested_holdout, sample_users
from trainer.tuning import tune

# Seeds of the independent random draws, derived from TRAIN_SEED.
SPLIT, TEST_USERS, VALIDATION_USERS, CHAMPION_USERS = 1, 3, 4, 5


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


def check_data(settings: config.Settings, report: dict) -> dict:
    """The metrics.json ``data_checks``; DataError naming every check that fails. Too few users or
    items make a model nobody should trust (one user gives NDCG 1.0 and lift 1.0), and many broken
    rows mean the drop is not what the ETL meant to write."""
    files = report["files"]
    broken = report["rows_rejected"] - sum(f["rejected"].get("non_positive_weight", 0) for f in files)
    share = broken / report["rows_read"] if report["rows_read"] else 0.0
    checks = {
        "rejected_share": round(share, 6),
        "max_rejected_share": settings.max_rejected_share,
        "n_users": report["n_users"],
        "min_users": settings.min_users,
        "n_items": report["n_items"],
        "min_items": settings.min_items,
        "min_eval_users": settings.eval_min_users,
    }
    problems = []
    if share > settings.max_rejected_share:
        by_reason: dict[str, int] = {}
        for f in files:
            for reason, count in f["rejected"].items():
                if reason != "non_positive_weight" and count:
                    by_reason[reason] = by_reason.get(reason, 0) + count
        problems.append(
            f"{broken} of {report['rows_read']} rows ({share:.1%}) are broken {by_reason}, more than "
            f"TRAIN_MAX_REJECTED_SHARE {settings.max_rejected_share:.1%}"
        )
    if report["n_users"] < settings.min_users:
        problems.append(f"{report['n_users']} users < TRAIN_MIN_USERS {settings.min_users}")
    if report["n_items"] < settings.min_items:
        problems.append(f"{report['n_items']} items < TRAIN_MIN_ITEMS {settings.min_items}")
    if problems:
        raise DataError("the data cannot make a trustworthy model: " + "; ".join(problems))
    return checks


def train(settings: config.Settings) -> dict:
    """Train into a staging folder and publish it; return the metrics (Stop when another attempt
    published first, with its outcome)."""
    staging = modelshare.staging_folder(settings.folder)
    try:
        return _train(settings, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when published


def _train(settings: config.Settings, staging: Path) -> dict:
    started = clock = time.monotonic()

    def lap() -> float:
        nonlocal clock
        now = time.monotonic()
        seconds, clock = round(now - clock, 3), now
        return seconds

    pa.set_cpu_count(settings.threads)
    with tempfile.TemporaryDirectory(prefix="trainer-") as downloads:
        location, files = sources.fetch(settings, Path(downloads))
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
    data_checks = check_data(settings, data.report)
    profile = drift.profile(matrix, data.user_ids, data.item_ids, data.report)

    seed, fraction = settings.seed, settings.holdout_fraction
    train_part, test, fit_part, validation = nested_holdout(matrix, fraction, [seed, SPLIT])
    test_users = sample_users(test, settings.eval_max_users, [seed, TEST_USERS])
    validation_users = sample_users(validation, settings.eval_max_users, [seed, VALIDATION_USERS])
    if len(validation_users) == 0:
        raise DataError(
            f"too little data to evaluate a model: no user has enough distinct items (at least {MIN_ITEMS} "
            f"after the test holdout) among {matrix.shape[0]} users and {matrix.nnz} interactions"
        )
    data_checks["n_eval_users"] = len(test_users)
    if len(test_users) < settings.eval_min_users:
        raise DataError(
            f"the data cannot make a trustworthy model: {len(test_users)} test users (users with at least "
            f"{MIN_ITEMS} distinct items) < EVAL_MIN_USERS {settings.eval_min_users}: a measurement on so "
            "few "
            "would not count"
        )
    log("split", test_users=len(test_users), validation_users=len(validation_users), seconds=lap())

    names = settings.families
    # Families whose memory grows with the catalogue, and the bound each one is refused beyond.
    bounds = {
        "ease": ("EASE_MAX_ITEMS", settings.ease_max_items),
        families.BLEND: ("EASE_MAX_ITEMS", settings.ease_max_items),
        "rp3beta": ("RP3BETA_MAX_ITEMS", settings.rp3beta_max_items),
    }
    for name in [n for n in names if n in bounds and matrix.shape[1] > bounds[n][1]]:
        names = tuple(n for n in names if n != name)
        variable, limit = bounds[name]
        log("skip-family", family=name, reason=f"{matrix.shape[1]} items > {variable} {limit}")
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
    folder = staging
    # One BLAS thread each for the two threads below, set here: a limit set inside the worker thread
    # does not reach OpenBLAS (measured: its products kept two threads, and the novelty basis took
    # 24 s instead of 5 s on 5 M rows of a busy machine).
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(max_workers=1) as background:
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
        popularity_per_user = per_user(Popularity(fit_part), test_users, train_part, test)
        popularity_metrics = means(popularity_per_user)
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
    paired = drifted = None
    if settings.gate.champion_applies(settings.folder):
        paired = _compare_champion(settings, selection.models[selection.family], data, train_part, test)
        log("compare-champion", **paired, seconds=lap())
        drifted = drift.report(profile, matrix, data.user_ids, data.item_ids, paired, settings.drift)
        log("drift", **drift.summary(drifted), seconds=lap())
    selection.models.clear()

    metrics = {
        "k": K,
        "model": model_metrics,
        "popularity": popularity_metrics,
        "lift_ndcg": round(lift, 6) if lift is not None else None,
        "popularity_ndcg_gain": paired_gain(model_per_user["ndcg_at_k"], popularity_per_user["ndcg_at_k"]),
        "protocol": protocol(seed, fraction, len(test_users)),
        "n_users": matrix.shape[0],
        "n_items": n_items,
        "n_interactions": int(matrix.nnz),
        "n_eval_users": len(test_users),
        "family": selection.family,
        "params": selection.params,
        "selection": {**selection.record, "winner": selection.family, "plain_als": plain},
        "data_checks": data_checks,
    }
    if paired is not None:
        metrics["champion"] = paired
    if drifted is not None:
        metrics["drift"] = drift.summary(drifted)
    verdict = evaluate_gate(settings.gate, metrics, settings.folder)
    metrics["gate"] = {
        "passed": verdict.passed,
        "checks": verdict.checks,
        "failures": verdict.failures,
        "notes": verdict.notes,
    }
    modelshare.atomic_write_json(folder / METRICS, metrics)
    provenance = {
        "source": location,
        "files": data.report["files"],
        "git_sha": settings.git_sha,
        "trainer_image": settings.trainer_image,
    }
    page = modelcard.render(settings.build, metrics, profile, drifted, provenance, time.monotonic() - started)
    artifacts.write_report(folder, profile, drifted, page, log)
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
        "rp3beta_max_items": settings.rp3beta_max_items,
        "min_users": settings.min_users,
        "min_items": settings.min_items,
        "eval_min_users": settings.eval_min_users,
        "max_rejected_share": settings.max_rejected_share,
    }
    modelshare.make_manifest(
        folder,
        build=settings.build,
        git_sha=settings.git_sha,
        params=params,
        data={"source": location, **data.report},
        trainer_image=settings.trainer_image,
    )
    modelshare.mark_complete(folder, settings.build)
    log("write", seconds=lap())
    if not modelshare.publish(folder, settings.folder):
        log("published-by-another-attempt", build=settings.build, folder=str(settings.folder))
        raise Stop(*already_complete(settings.folder, settings.build))
    modelshare.remove_stale_staging(settings.folder)
    log(
        "complete",
        build=settings.build,
        family=selection.family,
        lift_ndcg=metrics["lift_ndcg"],
        seconds=round(time.monotonic() - started, 3),
    )
    if not verdict.passed:
        raise Stop(GATE, f"build {settings.build} is below the quality gate: " + "; ".join(verdict.failures))
    return metrics


def _compare_champion(settings: config.Settings, model, data, train_part, test) -> dict:
    folder = settings.gate.champion_folder
    assert folder is not None  # only called with a champion gate
    try:
        loaded = champion.load(folder, settings.threads)
    except champion.ChampionError as exc:
        return {"folder": folder, "error": str(exc)}
    return champion.compare(
        loaded,
        model,
        data.user_ids,
        data.item_ids,
        train_part,
        test,
        settings.eval_max_users,
        settings.eval_min_users,
        [settings.seed, CHAMPION_USERS],
    )


def main() -> int:
    folder_text = os.environ.get("MODELFOLDER", "").strip()
    folder = Path(folder_text) if folder_text else None
    try:
        folder, build = config.release_folder()
        if modelshare.folder_state(folder) is FolderState.COMPLETE:
            code, reason = already_complete(folder, build)
            message = with_summary(reason, folder) if code in (TRAINED, GATE) else reason
            event = {TRAINED: "already-complete", GATE: "gate-failed"}.get(code, "refused")
            return finish(code, message, event, build=build, reason=reason)
        modelshare.clear_incomplete(folder)  # a failed or crashed attempt's leftovers, in atomic steps
    except ConfigError as exc:
        if folder is not None:
            fail(folder, f"configuration error: {exc}")
        return finish(CONFIG, f"configuration error: {exc}", "config-error", error=str(exc))
    except (PublishError, OSError) as exc:
        return finish(CONFIG, f"configuration error: {exc}", "config-error", error=str(exc))

    try:
        settings = config.load()
    except ConfigError as exc:
        fail(folder, f"configuration error: {exc}")
        return finish(CONFIG, f"configuration error: {exc}", "config-error", error=str(exc))
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
        try:
            with threadpool_limits(settings.threads, "blas"):
                metrics = train(settings)
        except Stop:
            raise
        except Exception as exc:
            if modelshare.folder_state(folder) is FolderState.COMPLETE:
                # Another attempt published the release meanwhile (and threw this one's staging away).
                log("published-by-another-attempt", build=build, error=redact(f"{type(exc).__name__}: {exc}"))
                raise Stop(*already_complete(folder, build)) from None
            raise
    except Stop as stop:
        event = {TRAINED: "already-complete", GATE: "gate-failed"}.get(stop.code, "refused")
        message = redact(stop.reason)
        return finish(
            stop.code,
            with_summary(message, folder) if stop.code in (TRAINED, GATE) else message,
            event,
            build=build,
            reason=message,
        )
    except (DataError, sources.SourceError) as exc:
        return training_failed(folder, build, redact(str(exc)))
    except Exception as exc:  # a bug or an exhausted machine: still tell the waiter why
        reason = redact(f"training failed unexpectedly: {type(exc).__name__}: {exc}")
        return training_failed(folder, build, reason, traceback=redact(traceback.format_exc()))
    gate = "; ".join(metrics["gate"]["checks"]) or "no gate set"
    message = (
        f"build {build} trained ({metrics['family']}, NDCG@{K} {metrics['model']['ndcg_at_k']:.4f}, "
        f"lift {metrics['lift_ndcg']}); gate: {gate}"
    )
    return finish(TRAINED, with_summary(message, folder), "trained", build=build, reason=message)
