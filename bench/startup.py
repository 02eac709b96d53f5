"""How long a new release waits on its own machinery, for a model from ~1 M interactions:

- gate latency: from complete.txt appearing to the waiter's exit (it verifies every checksum and
  the gate in between), with the default 1 s poll. The trainer writes manifest.json just before
  complete.txt, and the waiter polls every 0.1 s once it sees the manifest. Baseline in the same
  run: a folder that appears complete at once (moved into place whole), which only the plain
  1 s poll can catch.
- scorer cold start: from `python -m scorer` to the first 200 of /readyz (imports, checksums,
  loading, serving). Baselines in the same run: `python -c "import numpy"`, and every module the
  scorer imports, FastAPI included (`import uvicorn, scorer.routes`: numpy, FastAPI, pydantic,
  prometheus_client...). The scorer is ready before it imports FastAPI (scorer.api), so it can
  beat the second baseline.
  Two models: a synthetic factor model, and the trainer's own MovieLens 1M release
  (bench.trainer_runs.movielens_release), whose EASE-form files are the largest a model of that
  size gets.

Each figure is the median (and worst) of several runs; the machine is shared, so read the ratios.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import modelshare

N_USERS, N_ITEMS, FACTORS, PER_USER = 50_000, 10_000, 64, 20
GATE_RUNS = 6
START_RUNS = 5
REPO = Path(__file__).resolve().parent.parent


def _env(**values: str) -> dict:
    return {**os.environ, **values}


def gate_latency(folder: Path, staged: Path | None, rng: random.Random) -> float:
    """Start a waiting waiter, complete the release at a random moment, time until it exits 0.
    staged None: the folder is there without complete.txt (as the trainer leaves it before its
    last write); else the whole release is moved from staged into place at once."""
    waiter = subprocess.Popen(
        [sys.executable, "-m", "waiter"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        env=_env(MODELFOLDER=str(folder), BUILD_NUMBER="1", GATE_MIN_NDCG="0.1", WAIT_TIMEOUT_SECONDS="60"),
    )
    time.sleep(0.5 + rng.random())  # started and polling, at a random phase of its poll
    if staged is None:
        modelshare.mark_complete(folder, "1")
    else:
        staged.rename(folder)
    completed = time.perf_counter()
    code = waiter.wait(timeout=60)
    latency = time.perf_counter() - completed
    if code != 0:
        raise RuntimeError(f"waiter exited {code}")
    return latency


def cold_start(command: list[str], env: dict, url: str | None) -> float:
    """Seconds from spawning command to its exit (url None) or to the first 200 of url."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if url is None:
            process.wait(timeout=60)
            return time.perf_counter() - started
        while time.perf_counter() - started < 60:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"{url} not ready within 60 s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)


def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values)


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> str:
    sys.path.insert(0, str(REPO))
    from bench.serving import free_port
    from bench.trainer_runs import MOVIELENS_FORMS, MOVIELENS_RELEASE, movielens_release
    from tests.apps.modelfolder import write_model_folder

    rng = random.Random(5)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        release = Path(tmp) / "template"
        built = write_model_folder(
            release,
            "1",
            n_users=N_USERS,
            n_items=N_ITEMS,
            factors=FACTORS,
            per_user=PER_USER,
            seed=1,
            complete=False,
        )
        model_mb = _folder_mb(release)
        started = time.perf_counter()
        modelshare.mark_complete(release, "1")
        modelshare.verify(release, "1")
        verify_seconds = time.perf_counter() - started
        (release / modelshare.COMPLETE).unlink()

        latency: dict[str, list[float]] = {"trainer": [], "whole": []}
        for run in range(GATE_RUNS):
            for kind in latency:
                folder = Path(tmp) / f"{kind}-{run}"
                if kind == "trainer":
                    shutil.copytree(release, folder)
                    latency[kind].append(gate_latency(folder, None, rng))
                else:
                    staged = Path(tmp) / f"staged-{run}"
                    shutil.copytree(release, staged)
                    modelshare.mark_complete(staged, "1")
                    latency[kind].append(gate_latency(folder, staged, rng))
                shutil.rmtree(folder)
            print(
                f"  gate run {run}: trainer {latency['trainer'][-1]:.3f} s, "
                f"whole {latency['whole'][-1]:.3f} s",
                flush=True,
            )

        modelshare.mark_complete(release, "1")
        releases = [("scorer", release, "1", "1"), ("scorer2", release, "1", "2")]
        movielens = movielens_release()
        forms = {form: movielens_release(form) for form in MOVIELENS_FORMS} if movielens else {}
        if movielens is not None:
            releases.append(("movielens", movielens[0], movielens[1], "1"))
            releases += [(f"movielens-{form}", got[0], got[1], "1") for form, got in forms.items() if got]
        starts: dict[str, list[float]] = {"numpy": [], "imports": [], **{key: [] for key, *_ in releases}}
        python = sys.executable
        for run in range(START_RUNS):
            starts["numpy"].append(cold_start([python, "-c", "import numpy"], _env(), None))
            starts["imports"].append(
                cold_start([python, "-c", "import uvicorn, scorer.routes"], _env(), None)
            )
            for key, folder, build, workers in releases:
                port = free_port()
                env = _env(
                    MODELFOLDER=str(folder),
                    BUILD_NUMBER=build,
                    PORT=str(port),
                    WORKERS=workers,
                    PROBE_PORT=str(free_port()),
                )
                starts[key].append(
                    cold_start([python, "-m", "scorer"], env, f"http://127.0.0.1:{port}/readyz")
                )
            print("  cold start run", run, {k: round(v[-1], 3) for k, v in starts.items()}, flush=True)

    trainer, whole = _stats(latency["trainer"]), _stats(latency["whole"])
    numpy_start, imports, scorer, scorer2 = (
        _stats(starts[k]) for k in ("numpy", "imports", "scorer", "scorer2")
    )
    lines = [
        f"Model: {N_USERS:,} users x {N_ITEMS:,} items, {FACTORS} factors, {built.seen.nnz:,} interactions, "
        f"{model_mb:.1f} MB in the folder; checking every checksum took "
        f"{verify_seconds * 1000:.0f} ms.",
        "",
        f"Gate latency, complete.txt appearing -> waiter exit 0 (default 1 s poll, GATE_MIN_NDCG set), "
        f"{GATE_RUNS} runs each:",
        "",
        "| release appears | median s | worst s |",
        "|---|---:|---:|",
        f"| trainer-like: manifest.json, then complete.txt (0.1 s poll once the manifest is there) | "
        f"{trainer[0]:.3f} | {trainer[1]:.3f} |",
        "| baseline: whole folder moved into place at once (plain 1 s poll) | "
        f"{whole[0]:.3f} | {whole[1]:.3f} |",
        "",
        f"Cold start, process start -> first 200, {START_RUNS} runs each:",
        "",
        "| process | median s | worst s | x `import numpy` |",
        "|---|---:|---:|---:|",
        f'| baseline: `python -c "import numpy"` | {numpy_start[0]:.3f} | {numpy_start[1]:.3f} | 1.0x |',
        '| baseline: all the scorer\'s imports, FastAPI too, `python -c "import uvicorn, scorer.routes"` | '
        f"{imports[0]:.3f} | "
        f"{imports[1]:.3f} | {imports[0] / numpy_start[0]:.1f}x |",
        f"| `python -m scorer` -> /readyz 200 (default, 1 worker) | {scorer[0]:.3f} | {scorer[1]:.3f} | "
        f"{scorer[0] / numpy_start[0]:.1f}x |",
        f"| `python -m scorer` -> /readyz 200, WORKERS=2 | {scorer2[0]:.3f} | {scorer2[1]:.3f} | "
        f"{scorer2[0] / numpy_start[0]:.1f}x |",
    ]
    worst_model = scorer[0]
    goal_line = ""
    if movielens is not None:
        folder, _, metrics = movielens
        real = _stats(starts["movielens"])
        rows = [(f"the trainer's MovieLens 1M release, `{metrics['family']}`", real, folder)]
        for form, got in forms.items():
            if got is not None:
                rows.append(
                    (
                        f"MovieLens 1M, `{got[2]['family']}` release",
                        _stats(starts[f"movielens-{form}"]),
                        got[0],
                    )
                )
        worst_model = max(worst_model, *(figures[0] for _, figures, _ in rows))
        slowest = max(rows, key=lambda row: row[1][0])
        lines += [
            f"| `python -m scorer` -> /readyz 200, {label} ({_folder_mb(path):.1f} MB, 1 worker) | "
            f"{figures[0]:.3f} | {figures[1]:.3f} | {figures[0] / numpy_start[0]:.1f}x |"
            for label, figures, path in rows
        ]
        lines += [
            "",
            f"The MovieLens 1M release: `{metrics['family']}` "
            f"(test NDCG@10 {metrics['model']['ndcg_at_k']:.4f}), "
            f"{metrics['n_users']:,} users x {metrics['n_items']:,} items, {metrics['n_interactions']:,} "
            f"interactions (trained with {MOVIELENS_RELEASE}; the other forms with {MOVIELENS_FORMS}).",
        ]
        goal_line = (
            f" A MovieLens 1M release ready in <= 0.5 s whatever family wins: "
            f"{'met' if slowest[1][0] <= 0.5 else 'NOT met'} (slowest median {slowest[1][0]:.3f} s, "
            f"{slowest[1][0] / numpy_start[0]:.1f}x `import numpy` in the same run; load average "
            f"{os.getloadavg()[0]:.1f} at the end)."
        )
    else:
        lines += ["", "The MovieLens 1M release was skipped: its data could not be downloaded."]
    lines += [
        "",
        f"Goals: gate latency <= 1 s: {'met' if trainer[1] <= 1 else 'NOT met'} (worst {trainer[1]:.2f} s); "
        f"scorer cold start <= 1 s for a 1 M-interaction model: {'met' if worst_model <= 1 else 'NOT met'} "
        f"(median {worst_model:.2f} s for the slowest model; all the scorer's imports take "
        f"{imports[0]:.2f} s, "
        f"`import numpy` {numpy_start[0]:.2f} s on this machine now).{goal_line} Ready means the model is "
        "verified and loaded and the hot routes and probes answer; FastAPI (validation errors, /version, "
        "/docs, /metrics) is imported in the background right after, its `api-built` log line says how long "
        "it took. Sparse files (user rows, item-item matrices) are read and multiplied with numpy alone: no "
        "model imports scipy at start.",
    ]
    return "\n".join(lines)
