"""A run that cannot train says why in failed.txt (the waiter shows it) and exits non-zero;
nothing a waiter would accept is left behind."""

from __future__ import annotations

import pytest

import modelshare
from modelshare import FolderState

from .conftest import QUICK, run_trainer

BLOB = {"BLOB_STORAGE_ACCOUNT": "acct", "BLOB_STORAGE_CONTAINER": "c", "BLOB_STORAGE_CSV_FOLDER": "f"}


def assert_failed(folder, run, code, *phrases):
    assert run.returncode == code, run.stdout + run.stderr
    assert modelshare.folder_state(folder) is FolderState.FAILED
    reason = modelshare.read_failed_reason(folder)
    for phrase in phrases:
        assert phrase in reason, reason
    return reason


@pytest.mark.parametrize(
    "csvs, phrases",
    [
        ({}, ["no *.csv files in DATA_DIR"]),
        ({"a.csv": b"user_id,item_id\nu,i\n", "b.csv": b"\x00\xff\xfe garbage \x00"}, ["b.csv", "not UTF-8"]),
        ({"a.csv": b"user,item,weight\nu,i,1\n"}, ["a.csv", "no column user_id"]),
        ({"a.csv": b"user_id,item_id,weight\nu,i,n/a\n,i,3\n"}, ["no usable rows", "a.csv"]),
        (
            {"a.csv": b"user_id,item_id\nu1,i1\nu2,i2\n"},
            ["2 users < TRAIN_MIN_USERS 100", "2 items < TRAIN_MIN_ITEMS"],
        ),
    ],
    ids=["empty-folder", "garbage-file", "missing-column", "zero-usable-rows", "too-small"],
)
def test_bad_input_writes_failed_txt_naming_the_problem(tmp_path, csvs, phrases):
    data = tmp_path / "data"
    data.mkdir()
    for name, content in csvs.items():
        (data / name).write_bytes(content)
    folder = tmp_path / "share" / "9"
    run = run_trainer(MODELFOLDER=folder, BUILD_NUMBER="9", DATA_DIR=data, **QUICK)
    assert_failed(folder, run, 1, *phrases)
    assert run.event("failed")["reason"] == modelshare.read_failed_reason(folder)


@pytest.mark.parametrize(
    "settings, variable",
    [
        ({}, "DATA_DIR"),
        ({"DATA_DIR": "/data", "BLOB_STORAGE_ACCOUNT": "acct"}, "not both"),
        ({"BLOB_STORAGE_ACCOUNT": "acct", "BLOB_STORAGE_CONTAINER": "c"}, "BLOB_STORAGE_KEY_FILE"),
        (
            {**BLOB, "BLOB_STORAGE_KEY_FILE": "/no/such/secret/key"},
            "BLOB_STORAGE_KEY_FILE '/no/such/secret/key' cannot be read",
        ),
        ({"DATA_DIR": "/data", "BLOB_STORAGE_KEY": "s3cr3t-k3y"}, "set BLOB_STORAGE_KEY_FILE"),
        ({"DATA_DIR": "/data", "TUNE_BUDGET_SECONDS": "soon"}, "TUNE_BUDGET_SECONDS"),
        ({"DATA_DIR": "/data", "TRAIN_FAMILIES": "als,deep"}, "TRAIN_FAMILIES"),
        ({"DATA_DIR": "/data", "TRAIN_FAMILIES": "als,ease+als"}, "needs ease"),
        ({"DATA_DIR": "/data", "HOLDOUT_FRACTION": "0.9"}, "HOLDOUT_FRACTION"),
    ],
    ids=[
        "no-input",
        "two-inputs",
        "blob-without-key",
        "key-file-missing",
        "key-in-env",
        "budget",
        "families",
        "blend-without-ease",
        "holdout",
    ],
)
def test_misconfiguration_names_the_variable(tmp_path, settings, variable):
    folder = tmp_path / "9"
    run = run_trainer(MODELFOLDER=folder, BUILD_NUMBER="9", **settings)
    assert variable in assert_failed(folder, run, 2, "configuration error")
    assert variable in run.event("config-error")["error"]
    assert "s3cr3t-k3y" not in run.stdout + run.stderr


def test_without_modelfolder_it_exits_with_a_config_error(tmp_path):
    run = run_trainer(BUILD_NUMBER="9", DATA_DIR=tmp_path)
    assert run.returncode == 2 and "MODELFOLDER" in run.event("config-error")["error"]


def test_a_folder_that_is_not_a_release_is_never_cleared(tmp_path, small_dir):
    (tmp_path / "notes.txt").write_text("not a model")
    run = run_trainer(MODELFOLDER=tmp_path, BUILD_NUMBER="9", DATA_DIR=small_dir, **QUICK)
    assert run.returncode == 2 and "refusing to clear" in run.event("config-error")["error"]
    assert (tmp_path / "notes.txt").read_text() == "not a model"
    assert not (tmp_path / "failed.txt").exists()


def test_a_failed_attempt_is_cleared_and_retried(tmp_path, small_dir):
    folder = tmp_path / "9"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "user_vectors.npy").write_bytes(b"half a file")
    modelshare.mark_failed(folder, "earlier attempt ran out of memory")
    run = run_trainer(MODELFOLDER=folder, BUILD_NUMBER="9", DATA_DIR=small_dir, **QUICK)
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = modelshare.verify(folder, build="9")
    assert not (folder / "failed.txt").exists()
    assert "model/user_vectors.npy" not in manifest["files"] or (
        (folder / "model" / "user_vectors.npy").read_bytes() != b"half a file"
    )


def one_user(rows: list[str]) -> list[str]:
    return ['"u0",' + row.split(",", 1)[1] for row in rows]


def malformed_two_of_three(rows: list[str]) -> list[str]:
    return [row if n % 3 == 0 else row + ",extra,fields" for n, row in enumerate(rows)]


def half_nan_weights(rows: list[str]) -> list[str]:
    def nan(row: str) -> str:
        fields = row.split(",")
        return ",".join(fields[:2] + ["NaN"] + fields[3:])

    return [nan(row) if n % 2 else row for n, row in enumerate(rows)]


@pytest.mark.parametrize(
    "hostile, phrases",
    [
        (one_user, ["1 users < TRAIN_MIN_USERS 100"]),
        (malformed_two_of_three, ["are broken {'malformed':", "more than TRAIN_MAX_REJECTED_SHARE 10.0%"]),
        (half_nan_weights, ["are broken {'bad_weight':", "more than TRAIN_MAX_REJECTED_SHARE 10.0%"]),
    ],
    ids=["one-user", "two-thirds-malformed", "half-nan-weights"],
)
def test_data_that_cannot_make_a_trustworthy_model_fails_training(tmp_path, small_dir, hostile, phrases):
    """Before these checks, a one-user drop completed with NDCG 1.0 measured on one user and lift 1.0,
    and a drop of two-thirds malformed rows trained silently: both passed the floors."""
    data = tmp_path / "data"
    data.mkdir()
    for source in sorted(small_dir.glob("*.csv")):
        header, *rows = source.read_text().splitlines()
        assert header.replace('"', "").split(",")[:3] == ["user_id", "item_id", "weight"], header
        (data / source.name).write_text("\n".join([header, *hostile(rows)]) + "\n")
    folder = tmp_path / "share" / "9"
    run = run_trainer(
        MODELFOLDER=folder, BUILD_NUMBER="9", DATA_DIR=data, **QUICK, GATE_MIN_NDCG="0", GATE_MIN_LIFT="1"
    )
    reason = assert_failed(folder, run, 1, "the data cannot make a trustworthy model", *phrases)
    assert reason in run.event("failed")["reason"]


def test_the_data_limits_are_configurable_and_reported(tmp_path, small_dir):
    folder = tmp_path / "9"
    run = run_trainer(
        MODELFOLDER=folder, BUILD_NUMBER="9", DATA_DIR=small_dir, **QUICK, TRAIN_MIN_USERS="1000"
    )
    assert_failed(folder, run, 1, "149 users < TRAIN_MIN_USERS 1000")
    run = run_trainer(
        MODELFOLDER=folder, BUILD_NUMBER="9", DATA_DIR=small_dir, **QUICK, EVAL_MIN_USERS="1000"
    )
    assert_failed(folder, run, 1, "test users", "< EVAL_MIN_USERS 1000")
    run = run_trainer(MODELFOLDER=folder, BUILD_NUMBER="9", DATA_DIR=small_dir, **QUICK, TRAIN_MIN_ITEMS="10")
    assert run.returncode == 0, run.stdout + run.stderr
    checks = modelshare.read_json(folder / "metrics.json")["data_checks"]
    assert checks == {
        "rejected_share": 0.0,
        "max_rejected_share": 0.1,
        "n_users": 149,
        "min_users": 100,
        "n_items": 120,
        "min_items": 10,
        "n_eval_users": checks["n_eval_users"],
        "min_eval_users": 100,
    }
    assert 100 <= checks["n_eval_users"] <= 149
