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
        ({"a.csv": b"user_id,item_id\nu1,i1\nu2,i2\n"}, ["too little data to evaluate"]),
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
    ids=["no-input", "two-inputs", "blob-without-key", "key-file-missing", "key-in-env", "budget", "families", "blend-without-ease", "holdout"],
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
        (folder / "model" / "user_vectors.npy").read_bytes() != b"half a file")
