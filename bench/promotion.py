"""The promote Job's copy against a plain copy of the same release folder, on the same disk.

`python -m modelshare.promote` (what the promote Job runs: metrics.json verified and held to the
gate, every file copied and checked against the source manifest in the same pass, published in one
rename) against `cp -r` of the same folder to the same disk, in the same run, alternating; and
against the verified copy a script would make, `cp -r` then `sha256sum` of every copied file. The
folder is a factor model release (tests.apps.modelfolder) of about 150 MB, the size of a large
catalogue's release; a MovieLens 1M release is 3 to 55 MB.

Two cache states: warm (the source in the page cache, as right after the source stack wrote it)
and cold (`sync` and the page cache dropped before every run, so the source is read from the disk,
as a promotion reads another stack's share, never in its own node's page cache; needs root, else
only warm is measured). The ratio is the plain copy's seconds over the promotion's (throughput
against `cp`; the goal is >= 0.8x).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 7
KINDS = ("cp", "promote", "cp+sha256sum")
N_USERS, N_ITEMS, FACTORS = 500_000, 80_000, 64
REPO = Path(__file__).resolve().parent.parent
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def _drop_caches() -> bool:
    subprocess.run(["sync"], check=True)
    try:
        DROP_CACHES.write_text("3\n")
    except OSError:
        return False
    return True


def _timed(command: list[str], env: dict | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.PIPE, text=True)
    return time.perf_counter() - started, done.stdout


def main() -> str:
    sys.path.insert(0, str(REPO))
    from tests.apps.modelfolder import write_model_folder

    with tempfile.TemporaryDirectory(prefix="bench-promotion-") as tmp:
        source = Path(tmp) / "source" / "7"
        write_model_folder(source, "7", n_users=N_USERS, n_items=N_ITEMS, factors=FACTORS, per_user=2, seed=3)
        files = [p for p in source.rglob("*") if p.is_file()]
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        contents = [p.read_bytes() for p in files]
        started = time.perf_counter()
        for content in contents:
            hashlib.sha256(content).digest()
        hash_seconds = time.perf_counter() - started
        del contents
        can_drop = _drop_caches()
        states = ["warm", "cold"] if can_drop else ["warm"]
        seconds: dict[tuple[str, str], list[float]] = {(s, k): [] for s in states for k in (*KINDS, "copy")}
        env = {
            **os.environ,
            "SOURCE_MODELFOLDER": str(source),
            "BUILD_NUMBER": "7",
            "GATE_MIN_NDCG": "0.0",
            "PYTHONPATH": str(REPO / "apps" / "shared"),
        }
        for run in range(RUNS):
            for state in states:
                for kind in KINDS if run % 2 == 0 else KINDS[::-1]:
                    dest = Path(tmp) / "dest" / f"{state}-{kind}-{run}"
                    dest.parent.mkdir(exist_ok=True)
                    if state == "cold":
                        _drop_caches()
                    else:
                        # the source in the page cache
                        subprocess.run(["cat", *map(str, files)], check=True, stdout=subprocess.DEVNULL)
                    if kind == "cp":
                        took, _ = _timed(["cp", "-r", str(source), str(dest)])
                    elif kind == "cp+sha256sum":
                        copied = [str(dest / p.relative_to(source)) for p in files]
                        took, _ = _timed(
                            [
                                "sh",
                                "-c",
                                'cp -r "$0" "$1" && shift 2 && sha256sum "$@"',
                                str(source),
                                str(dest),
                                *copied,
                            ]
                        )
                    else:
                        took, log = _timed(
                            [sys.executable, "-m", "modelshare.promote"], {**env, "MODELFOLDER": str(dest)}
                        )
                        # promote()'s own seconds, as the Job logs them: the copy without Python's start
                        seconds[(state, "copy")].append(json.loads(log.splitlines()[-1])["seconds"])
                    seconds[(state, kind)].append(took)
                    shutil.rmtree(dest)
            print("  run", run, {f"{s}/{k}": round(v[-1], 3) for (s, k), v in seconds.items()}, flush=True)

    lines = [
        "## Promotion: the copy Job against a plain copy of the same folder",
        "",
        f"Release folder: {len(files)} files, {megabytes:.0f} MB (factor model, {N_USERS:,} users x "
        f"{N_ITEMS:,} items x {FACTORS} factors); median of {RUNS} alternating runs each, same disk.",
        "",
        "| source | `cp -r` s | `python -m modelshare.promote` s | of which the copy s | copy MB/s "
        "| cp s / copy s | cp s / promote s | `cp -r` + `sha256sum` s | that / promote s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for state in states:
        plain = statistics.median(seconds[(state, "cp")])
        promote = statistics.median(seconds[(state, "promote")])
        copy = statistics.median(seconds[(state, "copy")])
        verified = statistics.median(seconds[(state, "cp+sha256sum")])
        label = "page cache (warm)" if state == "warm" else "disk (caches dropped before each run)"
        lines.append(
            f"| {label} | {plain:.3f} | {promote:.3f} | {copy:.3f} | {megabytes / copy:.0f} "
            f"| **{plain / copy:.2f}x** | {plain / promote:.2f}x | {verified:.3f} "
            f"| {verified / promote:.2f}x |"
        )
    if not can_drop:
        lines += ["", "Cold runs skipped: dropping the page cache needs root."]
    plain = statistics.median(seconds[(states[-1], "cp")])
    copy = statistics.median(seconds[(states[-1], "copy")])
    promote = statistics.median(seconds[(states[-1], "promote")])
    lines += [
        "",
        "*The copy* is `promote()`'s own seconds, as the Job logs them (`seconds` of its `copied` line): "
        "the gate, the copy and its checks, the publish; the process adds Python's start and imports, "
        "read from the disk too in the cold runs. The copy's runs (s), in order: warm "
        + ", ".join(f"{s:.2f}" for s in seconds[("warm", "copy")])
        + (f"; cold {', '.join(f'{s:.2f}' for s in seconds[('cold', 'copy')])}" if can_drop else "")
        + ".",
        "",
        f"Goal: the promotion's copy >= 0.8x a plain copy of the folder from the disk: "
        f"{'met' if plain / copy >= 0.8 else 'NOT met'} ({plain / copy:.2f}x; the whole process "
        f"{plain / promote:.2f}x). The copy reads 1 MB at a time and copies two files at once, largest "
        "first (modelshare.promote), so one file's read overlaps the other's hash. From the page cache "
        f"no verifying copy reaches it: sha256 of the folder's {megabytes:.0f} MB in memory alone took "
        f"{hash_seconds:.3f} s ({megabytes / hash_seconds:.0f} MB/s, hashlib, one core, in this run), "
        f"while `cp -r` copies in the kernel at {megabytes / statistics.median(seconds[('warm', 'cp')]):.0f} "
        "MB/s from the page cache. Against the verified copy a script makes, the single pass is the faster.",
    ]
    return "\n".join(lines)
