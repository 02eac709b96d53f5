"""Data drift between builds on the planted data's real shapes: two halves of one sample do not
drift; a reversed popularity, a halved volume, many new users or rescaled weights do, each in its own
figure; a figure over its DRIFT_FAIL_* threshold fails the gate (trainer and waiter alike)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pytest

import modelshare
from modelshare import ConfigError
from modelshare.gate import Gate, evaluate
from trainer import drift, sample
from trainer.reading import read_interactions
from trainer.sources import InputFile

from .conftest import QUICK, run_trainer

ROWS = 40_000  # two halves of 20,000 rows: 1,000 users and 800 items drawn from one distribution


def read(folder: Path):
    return read_interactions([InputFile(p.name, p) for p in sorted(folder.glob("*.csv"))])


def rewrite(source: Path, target: Path, change) -> Path:
    """A copy of source's CSV with change(table) applied."""
    options = pa_csv.ConvertOptions(column_types={"user_id": pa.string(), "item_id": pa.string()})
    table = pa_csv.read_csv(next(source.glob("*.csv")), convert_options=options)
    target.mkdir(parents=True)
    pa_csv.write_csv(change(table), target / "part-00000.csv")
    return target


def reversed_popularity(table: pa.Table) -> pa.Table:
    items = table.column("item_id").to_pylist()
    ranked = [item for item, _ in Counter(items).most_common()]
    swap = dict(zip(ranked, ranked[::-1]))
    return table.set_column(1, "item_id", pa.array([swap[i] for i in items]))


def halved(table: pa.Table) -> pa.Table:
    return table.slice(0, table.num_rows // 2)


def new_users(table: pa.Table) -> pa.Table:
    users = table.column("user_id").to_pylist()
    rng = np.random.default_rng(0)
    renamed = {u: f"new-{u}" if rng.random() < 0.6 else u for u in sorted(set(users))}
    return table.set_column(0, "user_id", pa.array([renamed[u] for u in users]))


def heavier_weights(table: pa.Table) -> pa.Table:
    return table.set_column(2, "weight", pc.multiply(table.column("weight"), 100))


@pytest.fixture(scope="module")
def halves(tmp_path_factory) -> tuple[Path, Path]:
    """The first and second half of one planted sample: the same distribution, other draws."""
    root = tmp_path_factory.mktemp("halves")
    sample.write(root / "all", ROWS, files=2, seed=3)
    for n, name in enumerate(("first", "second")):
        (root / name).mkdir()
        shutil.move(root / "all" / f"part-{n:05d}.csv", root / name / "part-00000.csv")
    return root / "first", root / "second"


def figures(champion: Path, challenger: Path) -> dict:
    old, new = read(champion), read(challenger)
    theirs = drift.profile(old.matrix, old.user_ids, old.item_ids, old.report)
    ours = drift.profile(new.matrix, new.user_ids, new.item_ids, new.report)
    return drift.compare(
        ours, theirs, new.matrix, new.user_ids, new.item_ids, set(old.user_ids), set(old.item_ids)
    )


def test_two_halves_of_one_sample_do_not_drift(halves):
    found = figures(*halves)["figures"]
    warnings, failures = drift.judge(found, default_thresholds())
    assert not warnings and not failures, found
    # far below the defaults, not just under them
    assert (
        found["item_popularity_psi"] < 0.05
        and found["user_activity_psi"] < 0.02
        and found["weight_psi"] < 0.01
    )
    assert found["new_user_share"] < 0.1 and found["new_item_share"] < 0.01 and found["volume_change"] == 0


def default_thresholds() -> drift.Thresholds:
    return drift.Thresholds({name: default for name, (default, _) in drift.FIGURES.items()}, {})


@pytest.mark.parametrize(
    "change, figure, at_least",
    [
        (reversed_popularity, "item_popularity_psi", 1.0),
        (halved, "volume_change", 0.5),
        (halved, "user_activity_psi", 0.1),
        (new_users, "new_user_share", 0.5),
        (heavier_weights, "weight_psi", 1.0),
    ],
    ids=["reversed popularity", "volume halved", "activity halved", "60 % new users", "weights x100"],
)
def test_a_shift_shows_in_its_own_figure(tmp_path, halves, change, figure, at_least):
    shifted = rewrite(halves[1], tmp_path / "shifted", change)
    found = figures(halves[0], shifted)["figures"]
    assert drift.magnitude(figure, found[figure]) >= at_least, found
    warnings, _ = drift.judge(found, default_thresholds())
    assert any(w.startswith(f"data drift: {figure} ") for w in warnings), warnings
    # an unrelated figure stays calm: the figures tell what moved
    calm = {
        "item_popularity_psi": "new_user_share",
        "volume_change": "item_popularity_psi",
        "user_activity_psi": "new_item_share",
        "new_user_share": "item_popularity_psi",
        "weight_psi": "user_activity_psi",
    }[figure]
    assert drift.magnitude(calm, found[calm]) < default_thresholds().warn[calm], found


def test_thresholds_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DRIFT_WARN_NEW_USER_SHARE", "0.3")
    monkeypatch.setenv("DRIFT_FAIL_ITEM_POPULARITY_PSI", "0.25")
    thresholds = drift.Thresholds.from_env()
    assert thresholds.warn["new_user_share"] == 0.3 and thresholds.fail == {"item_popularity_psi": 0.25}
    warnings, failures = drift.judge({"item_popularity_psi": 0.3, "new_user_share": 0.1}, thresholds)
    assert failures == [
        "data drift: item_popularity_psi 0.3000 (item popularity (PSI over the champion's "
        "popularity groups)) >= DRIFT_FAIL_ITEM_POPULARITY_PSI 0.25"
    ]
    assert warnings == []  # failing, so not warned about twice
    monkeypatch.setenv("DRIFT_FAIL_VOLUME_CHANGE", "half")
    with pytest.raises(ConfigError, match="DRIFT_FAIL_VOLUME_CHANGE must be a number"):
        drift.Thresholds.from_env()


@pytest.fixture(scope="module")
def champion_folder(tmp_path_factory, halves):
    folder = tmp_path_factory.mktemp("share") / "1"
    run = run_trainer(MODELFOLDER=folder, BUILD_NUMBER="1", DATA_DIR=halves[0], **QUICK)
    assert run.returncode == 0, run.stdout + run.stderr
    return folder


def challenge(tmp_path: Path, champion: Path, data: Path, **settings):
    folder = tmp_path / "2"
    run = run_trainer(
        MODELFOLDER=folder,
        BUILD_NUMBER="2",
        DATA_DIR=data,
        GATE_CHAMPION_MODELFOLDER=champion,
        GATE_CHAMPION_TOLERANCE="1",
        TERMINATION_LOG=tmp_path / "termination",
        **QUICK,
        **settings,
    )
    return run, folder


def test_the_trainer_profiles_its_data_and_reports_no_drift_on_the_same_distribution(
    tmp_path, champion_folder, halves
):
    run, folder = challenge(tmp_path, champion_folder, halves[1], DRIFT_FAIL_ITEM_POPULARITY_PSI="0.25")
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = modelshare.verify(folder, build="2")
    assert {"model/data_profile.json", "model/drift.json"} <= set(manifest["files"])  # checksummed
    report = modelshare.read_json(folder / "model" / "drift.json")
    assert report["champion"]["build"] == "1" and not report["warnings"] and not report["failures"]
    assert report["figures"]["item_popularity_psi"] < 0.05
    metrics = modelshare.read_json(folder / "metrics.json")
    assert metrics["drift"]["figures"] == report["figures"] and metrics["gate"]["passed"]
    profile = modelshare.read_json(folder / "model" / "data_profile.json")
    assert profile["rows_used"] == ROWS // 2 and sum(profile["user_activity"]) == profile["n_users"]
    assert run.event("drift")["failures"] == []


def test_drift_over_the_fail_threshold_fails_the_gate_for_trainer_and_waiter(
    tmp_path, champion_folder, halves
):
    shifted = rewrite(halves[1], tmp_path / "shifted", reversed_popularity)
    run, folder = challenge(tmp_path, champion_folder, shifted, DRIFT_FAIL_ITEM_POPULARITY_PSI="0.25")
    assert run.returncode == 3, run.stdout + run.stderr
    message = (tmp_path / "termination").read_text()
    assert message.startswith("build 2 is below the quality gate: data drift: item_popularity_psi ")
    assert "DRIFT_FAIL_ITEM_POPULARITY_PSI 0.25" in message.splitlines()[0]
    metrics = modelshare.read_json(folder / "metrics.json")
    assert not metrics["gate"]["passed"] and metrics["drift"]["failures"] == metrics["gate"]["failures"]
    # the waiter, without any DRIFT_* variable, refuses the folder for the same reason
    verdict = evaluate(Gate(champion_folder=str(champion_folder), champion_tolerance=1.0), metrics, folder)
    assert verdict.failures == metrics["drift"]["failures"]
    modelshare.verify(folder, build="2")  # complete, for a look


def test_a_champion_without_a_profile_is_reported_not_failed(tmp_path, champion_folder, halves):
    """A champion trained before data profiles existed: the build says drift was not measured."""
    old = tmp_path / "share" / "1"
    shutil.copytree(champion_folder, old)
    (old / "model" / "data_profile.json").unlink()
    modelshare.make_manifest(old, build="1")
    run, folder = challenge(tmp_path / "share", old, halves[1], DRIFT_FAIL_ITEM_POPULARITY_PSI="0")
    assert run.returncode == 0, run.stdout + run.stderr
    report = modelshare.read_json(folder / "model" / "drift.json")
    assert "figures" not in report and "the champion has no data_profile.json" in report["error"]
    assert modelshare.read_json(folder / "metrics.json")["gate"]["notes"] == report["warnings"]


def test_a_champion_folder_that_did_not_verify_is_not_read(tmp_path):
    """Its profile would be as untrustworthy as its model: the report says why nothing was measured."""
    data = read(sample.write(tmp_path / "data", 2_000, seed=1)[0].parent)
    ours = drift.profile(data.matrix, data.user_ids, data.item_ids, data.report)
    paired = {"folder": str(tmp_path / "share" / "1"), "error": "its folder does not verify: model/seen.npz"}
    report = drift.report(ours, data.matrix, data.user_ids, data.item_ids, paired, default_thresholds())
    assert "figures" not in report and report["failures"] == []
    assert (
        report["error"] == "the champion's folder cannot be used: its folder does not verify: model/seen.npz"
    )
