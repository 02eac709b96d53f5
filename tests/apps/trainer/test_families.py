"""The baseline families users compare a platform with (RP3beta beside EASE and ALS): each is the
published model, is refused clearly beyond its memory bound, and goes through the release, the
champion comparison, the drift report, the gate and the scorer like the others."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import modelshare
from scorer.model import Model
from trainer import champion, families, sample

from .conftest import run_trainer


def random_matrix(users=150, items=60, density=0.1, seed=0):
    matrix = sparse.random(users, items, density=density, format="csr", random_state=seed, dtype=np.float32)
    matrix.data[:] = np.random.default_rng(seed).integers(1, 5, matrix.nnz)
    return matrix


def rp3beta_by_hand(matrix, alpha, beta, keep):
    """Paudel et al. 2017, as in Dacrema et al. 2019: W = (P_iu^alpha P_ui^alpha) / pop^beta."""
    binary = (matrix.toarray() > 0).astype(np.float64)
    user_step = binary / np.maximum(binary.sum(axis=1, keepdims=True), 1)
    item_step = binary.T / np.maximum(binary.T.sum(axis=1, keepdims=True), 1)
    walk = (item_step**alpha) @ (user_step**alpha)
    popularity = binary.sum(axis=0)
    walk *= np.where(popularity > 0, np.maximum(popularity, 1) ** -beta, 0)
    np.fill_diagonal(walk, 0)
    for row in walk:  # the keep strongest neighbours of each item
        row[np.argsort(-row, kind="stable")[keep:]] = 0
    return walk


@pytest.mark.parametrize("alpha, beta, keep", [(1.0, 0.0, 59), (0.5, 0.4, 10), (1.25, 0.8, 3)])
def test_rp3beta_is_the_popularity_penalised_three_step_walk(alpha, beta, keep):
    matrix = random_matrix(seed=4)
    model = families.fit("rp3beta", {"alpha": alpha, "beta": beta, "K": keep}, matrix, 2, 0)
    expected = rp3beta_by_hand(matrix, alpha, beta, keep)
    np.testing.assert_allclose(model.right.toarray(), expected, rtol=1e-4, atol=1e-7)
    assert np.diff(model.right.indptr).max() <= keep
    # scores = the user's binary row @ W, the product the scorer computes
    users = np.arange(10)
    binary = (matrix[users].toarray() > 0).astype(np.float64)
    np.testing.assert_allclose(model.scores(users), binary @ expected, rtol=1e-4, atol=1e-7)


def test_rp3beta_blocks_do_not_change_the_result(monkeypatch):
    matrix = random_matrix(items=70, seed=8)
    whole = families.fit("rp3beta", {"alpha": 0.75, "beta": 0.3, "K": 12}, matrix, 2, 0).right
    monkeypatch.setattr(families, "RP3_BLOCK", 16)  # 70 items in five blocks, the last one short
    blocked = families.fit("rp3beta", {"alpha": 0.75, "beta": 0.3, "K": 12}, matrix, 2, 0).right
    np.testing.assert_allclose(blocked.toarray(), whole.toarray(), rtol=1e-6)


def test_rp3beta_beyond_its_item_bound_is_refused_by_name(tmp_path, small_dir):
    run = run_trainer(
        MODELFOLDER=tmp_path / "1",
        BUILD_NUMBER="1",
        DATA_DIR=small_dir,
        TRAIN_FAMILIES="als-plain,rp3beta",
        TUNE_TRIALS_PER_FAMILY=1,
        RP3BETA_MAX_ITEMS=10,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    skipped = run.event("skip-family")
    assert skipped["family"] == "rp3beta" and "RP3BETA_MAX_ITEMS 10" in skipped["reason"]
    alone = run_trainer(
        MODELFOLDER=tmp_path / "2",
        BUILD_NUMBER="2",
        DATA_DIR=small_dir,
        TRAIN_FAMILIES="rp3beta",
        RP3BETA_MAX_ITEMS=10,
    )
    assert alone.returncode == 1
    assert "no model family applies" in (tmp_path / "2" / "failed.txt").read_text()


@pytest.fixture(scope="module")
def rp3beta_releases(tmp_path_factory, small_dir):
    """Build 1 serves RP3beta; build 2, RP3beta on the next drop of data, is compared with build 1
    as its champion."""
    share, next_day = tmp_path_factory.mktemp("share"), tmp_path_factory.mktemp("next-day")
    sample.write(next_day, 6_000, files=1, seed=6)
    quick = {"TRAIN_FAMILIES": "rp3beta", "TUNE_TRIALS_PER_FAMILY": 2}
    first = run_trainer(MODELFOLDER=share / "1", BUILD_NUMBER="1", DATA_DIR=small_dir, **quick)
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_trainer(
        MODELFOLDER=share / "2",
        BUILD_NUMBER="2",
        DATA_DIR=next_day,
        GATE_CHAMPION_MODELFOLDER=share / "1",
        GATE_CHAMPION_TOLERANCE="1",
        **quick,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    return share


def test_an_rp3beta_release_is_compared_with_its_champion_drift_and_gate(rp3beta_releases):
    metrics = modelshare.read_json(rp3beta_releases / "2" / "metrics.json")
    assert metrics["family"] == "rp3beta"
    paired = metrics["champion"]
    assert "error" not in paired and paired["build"] == "1" and paired["family"] == "rp3beta"
    assert paired["users"] >= 100
    gain = paired["ndcg_gain"]
    assert gain["gain"] == pytest.approx(paired["model_ndcg"] - paired["champion_ndcg"], abs=1e-5)
    assert "figures" in metrics["drift"] and not metrics["drift"]["failures"]
    assert metrics["gate"]["passed"], metrics["gate"]


def test_the_scorer_serves_an_rp3beta_release_as_the_trainer_scores_it(rp3beta_releases):
    folder = rp3beta_releases / "1"
    served = Model.load(folder, "1")
    model = champion.load(folder, threads=2)
    for row in range(0, len(model.user_ids), 97):
        answer = served.recommend([model.user_ids[row]], 5)[0]
        scores = model.model.scores(np.array([row]))[0]
        scores[model.seen[row].indices] = -np.inf
        assert answer.scores == pytest.approx(np.sort(scores)[::-1][:5].tolist(), rel=1e-4, abs=1e-6)
        assert answer.item_ids == [model.item_ids[i] for i in np.argsort(-scores, kind="stable")[:5]] or (
            len(set(np.round(answer.scores, 5))) < 5  # ties may come in another order
        )
