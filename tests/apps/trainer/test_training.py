"""End to end on planted-structure data: `python -m trainer` as a real process writes a release
the waiter will accept, whose model beats popularity and a validation-tuned plain ALS."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import sparse

import modelshare
from modelshare import layout
from trainer import sample

from .conftest import PLANTED, run_trainer

METRIC_KEYS = {"precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k"}


@pytest.fixture(scope="module")
def release(planted_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("share") / "153"
    run = run_trainer(
        MODELFOLDER=folder,
        BUILD_NUMBER="153",
        DATA_DIR=planted_dir,
        GIT_SHA="0123abc",
        TRAINER_IMAGE="registry.example/trainer@sha256:feed",
        TERMINATION_LOG=folder.parent / "termination-log",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return folder, run


def test_release_verifies_and_manifest_records_provenance(release, planted_dir):
    folder, _ = release
    manifest = modelshare.verify(folder, build="153")
    assert manifest["git_sha"] == "0123abc"
    assert manifest["trainer_image"] == "registry.example/trainer@sha256:feed"
    data = manifest["data"]
    assert data["source"] == str(planted_dir.resolve())
    assert [f["name"] for f in data["files"]] == ["part-00000.csv", "part-00001.csv"]
    for entry in data["files"]:
        assert entry["sha256"] == modelshare.sha256_file(planted_dir / entry["name"])
    assert data["rows_read"] == PLANTED["rows"] and data["rows_rejected"] == 0
    assert manifest["params"]["family"] in {"als", "als-plain", "item-knn", "ease", "rp3beta", "ease+als"}
    assert manifest["params"]["hyperparameters"]
    model_files = {
        f"{layout.MODEL_DIR}/{name}"
        for name in (
            layout.USER_IDS,
            layout.ITEM_IDS,
            layout.SEEN,
            layout.POPULAR,
            layout.POPULAR_SCORES,
            layout.MODEL_CARD,
        )
    }
    assert model_files | {layout.METRICS} <= set(manifest["files"])
    assert not any(name.endswith(layout.TMP_SUFFIX) for name in manifest["files"])


def test_metrics_follow_the_contract_and_beat_popularity(release):
    folder, _ = release
    metrics = json.loads((folder / layout.METRICS).read_text())
    assert metrics["k"] == 10
    assert set(metrics["model"]) == METRIC_KEYS and set(metrics["popularity"]) == METRIC_KEYS
    assert metrics["lift_ndcg"] == pytest.approx(
        metrics["model"]["ndcg_at_k"] / metrics["popularity"]["ndcg_at_k"], rel=1e-4
    )
    assert metrics["lift_ndcg"] > 2.5, metrics
    assert "per-user" in metrics["protocol"] and "seed" in metrics["protocol"].lower()
    manifest = modelshare.read_json(folder / layout.MANIFEST)
    assert metrics["n_interactions"] == manifest["data"]["n_interactions"] > 0
    card = json.loads((folder / layout.MODEL_DIR / layout.MODEL_CARD).read_text())
    assert (card["n_users"], card["n_items"], card["n_interactions"]) == (
        metrics["n_users"],
        metrics["n_items"],
        metrics["n_interactions"],
    )
    assert card["family"] == metrics["family"]


def test_selection_beats_a_validation_tuned_plain_als(release):
    folder, _ = release
    metrics = json.loads((folder / layout.METRICS).read_text())
    selection = metrics["selection"]
    plain = selection["plain_als"]
    assert selection["winner"] == metrics["family"] != "als-plain"
    assert selection["families"]["als-plain"]["trials"] >= 6  # plain ALS was tuned, not a default
    assert selection["families"][metrics["family"]]["validation_ndcg"] > plain["validation_ndcg"]
    # on the untouched test holdout, by a clear margin (about 5 % on this planted data), user for user
    assert metrics["model"]["ndcg_at_k"] > 1.04 * plain["test"]["ndcg_at_k"], (metrics["model"], plain)
    gain = plain["ndcg_gain"]
    assert gain["gain"] == pytest.approx(metrics["model"]["ndcg_at_k"] - plain["test"]["ndcg_at_k"], abs=1e-5)
    assert gain["interval"][0] > 0 and gain["users"] == metrics["n_eval_users"], gain
    assert not selection["budget_exhausted"]


def _load(path):
    return sparse.load_npz(path).tocsr() if path.suffix == ".npz" else np.load(path)


def test_the_one_scoring_path_recommends_unseen_items_of_the_users_tastes(release):
    folder, _ = release
    model = folder / layout.MODEL_DIR
    card = json.loads((model / layout.MODEL_CARD).read_text())
    user_vectors, item_vectors = _load(model / card["user_vectors"]), _load(model / card["item_vectors"])
    seen = sparse.load_npz(model / layout.SEEN).tocsr()
    user_ids = json.loads((model / layout.USER_IDS).read_text())
    item_ids = json.loads((model / layout.ITEM_IDS).read_text())
    popular = np.load(model / layout.POPULAR)
    assert popular.dtype == np.int32 and sorted(popular) == list(range(len(item_ids)))
    assert np.all(np.diff(np.load(model / layout.POPULAR_SCORES)) <= 0)

    shape = sample.default_shape(PLANTED["rows"])
    truth = sample.interactions(
        PLANTED["rows"], users=shape[0], items=shape[1], clusters=shape[2], seed=PLANTED["seed"]
    )
    in_taste, popular_in_taste = [], []
    for row in range(0, len(user_ids), 7):
        vector = user_vectors[row].toarray().ravel() if sparse.issparse(user_vectors) else user_vectors[row]
        scores = np.asarray(item_vectors @ vector).ravel()  # ITEM_VECTORS @ user_vector
        scores[seen[row].indices] = -np.inf
        top = np.argsort(-scores)[:10]
        assert not set(top) & set(seen[row].indices)
        user = int(user_ids[row][1:])
        tastes = {truth["primary"][user], truth["secondary"][user]}
        clusters = [truth["item_cluster"][int(item_ids[i][1:])] for i in top]
        in_taste.append(np.mean([c in tastes for c in clusters]))
        unseen_popular = [i for i in popular if i not in set(seen[row].indices)][:10]
        popular_in_taste.append(
            np.mean([truth["item_cluster"][int(item_ids[i][1:])] in tastes for i in unseen_popular])
        )
    assert np.mean(in_taste) > 0.8
    assert np.mean(in_taste) > 2 * np.mean(popular_in_taste)


def test_log_has_one_line_per_stage_with_timings(release):
    _, run = release
    for stage in (
        "start",
        "fetch",
        "read",
        "split",
        "tune",
        "refit",
        "evaluate",
        "write-files",
        "write",
        "complete",
    ):
        event = run.event(stage)
        assert event["app"] == "trainer"
        if stage != "start":
            assert event["seconds"] >= 0
    trials = [e for e in run.events if e["event"] == "tune-trial"]
    assert len(trials) >= 8 and all("validation_ndcg" in e and "elapsed" in e for e in trials)


def test_the_termination_message_says_what_training_produced_for_the_ledger(release, planted_dir):
    """The path back to the program (components/training_results.py): a human line, then a JSON line."""
    from components.training_results import parse

    folder, _ = release
    human, line = (folder.parent / "termination-log").read_text().strip().splitlines()
    assert human.startswith("build 153 trained (")
    summary = parse(human + "\n" + line, "153")
    metrics = json.loads((folder / layout.METRICS).read_text())
    assert summary["modelSha256"] == modelshare.model_sha256(folder)
    assert (summary["gitSha"], summary["trainerImage"]) == ("0123abc", "registry.example/trainer@sha256:feed")
    assert summary["data"]["files"] == 2 and summary["data"]["rowsUsed"] == PLANTED["rows"]
    assert summary["data"]["source"] == str(planted_dir.resolve()) and len(summary["data"]["sha256"]) == 64
    assert (summary["family"], summary["params"]) == (metrics["family"], metrics["params"])
    assert summary["test"] == metrics["model"] and summary["liftNdcg"] == metrics["lift_ndcg"]
    assert summary["gatePassed"] is True and summary["champion"] is None
    assert parse(human + "\n" + line, "154") is None  # another build's message is not this record's
