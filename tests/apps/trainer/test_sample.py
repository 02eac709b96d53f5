"""`python -m trainer.sample`: the demo's and benchmark's data, seeded and in the input format."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.csv as pa_csv

from trainer import sample

from .conftest import REPO


def test_cli_writes_seeded_csvs_in_the_input_format(tmp_path):
    for out in (tmp_path / "a", tmp_path / "b"):
        proc = subprocess.run(
            [sys.executable, "-m", "trainer.sample", str(out), "--rows", "3000", "--files", "3"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        assert proc.stdout.split() == [str(out / f"part-{n:05d}.csv") for n in range(3)]
    tables = [pa_csv.read_csv(path) for path in sorted((tmp_path / "a").glob("*.csv"))]
    assert tables[0].column_names == ["user_id", "item_id", "weight", "timestamp"]
    assert sum(t.num_rows for t in tables) == 3000
    assert min(t.column("weight").to_numpy().min() for t in tables) >= 1
    for n in range(3):
        name = f"part-{n:05d}.csv"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_cli_refuses_nonsense_sizes(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.sample", str(tmp_path), "--rows", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--rows" in proc.stderr


def test_planted_tastes_dominate_each_users_rows():
    shape = sample.default_shape(20_000)
    data = sample.interactions(20_000, users=shape[0], items=shape[1], clusters=shape[2], seed=1)
    cluster = data["item_cluster"][data["item"]]
    in_taste = (cluster == data["primary"][data["user"]]) | (cluster == data["secondary"][data["user"]])
    assert in_taste.mean() > 0.8  # 90 % drawn from the tastes, plus noise that lands there by chance
