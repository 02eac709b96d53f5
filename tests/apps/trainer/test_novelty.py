"""trainer.novelty: the linear autoencoder of user histories separates real users it never saw from
synthetic ones, the served score is a percentile among the training users, and a trainer run
writes it (checksummed in the manifest) for the scorer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import sparse

import modelshare
from bench.novelty import auc, binary
from modelshare import layout
from tests.apps.trainer.conftest import QUICK, run_trainer
from trainer import novelty, sample


@pytest.fixture(scope="module")
def planted():
    drawn = sample.interactions(60_000, users=2_000, items=1_500, clusters=20, seed=7)
    return binary(drawn["user"], drawn["item"], (2_000, 1_500))


def test_real_users_it_never_saw_score_below_synthetic_ones(planted):
    rng = np.random.default_rng(0)
    fit, held_out = planted[:1_600], planted[1_600:]
    held_out = held_out[np.diff(held_out.indptr) > 0]
    basis = novelty.item_basis(fit)
    # Synthetic users: as many items as a held-out user, drawn uniformly from the catalogue.
    counts = np.diff(held_out.indptr)
    rows = np.repeat(np.arange(len(counts)), counts)
    synthetic = binary(rows, rng.integers(0, planted.shape[1], len(rows)), held_out.shape)
    real = novelty.reconstruction_error(held_out, basis)
    fake = novelty.reconstruction_error(synthetic, basis)
    assert auc(real, fake) > 0.95
    assert np.all((0 <= real) & (real <= 1)) and np.all((0 <= fake) & (fake <= 1))


def test_served_novelty_is_the_percentile_among_training_users(planted):
    scores, card = novelty.user_novelty(planted)
    assert scores.dtype == np.float32 and scores.shape == (planted.shape[0],)
    assert 0 < scores.min() and scores.max() == 1.0
    errors = novelty.reconstruction_error(planted, novelty.item_basis(planted))
    order = np.argsort(errors, kind="stable")
    assert np.all(np.diff(scores[order]) >= 0)  # more novel history, higher percentile
    assert abs(float(np.mean(scores <= 0.5)) - 0.5) < 0.01  # half the training users are below 0.5
    assert card["rank"] == novelty.RANK and set(card["error_quantiles"]) == {"0.5", "0.95", "0.99"}
    empty = sparse.csr_matrix((1, planted.shape[1]), dtype=np.float32)
    assert novelty.reconstruction_error(empty, novelty.item_basis(planted)).tolist() == [1.0]


def test_a_trainer_run_writes_the_novelty_of_every_user_into_the_manifest(small_dir, tmp_path):
    folder = tmp_path / "5"
    run = run_trainer(MODELFOLDER=str(folder), BUILD_NUMBER="5", DATA_DIR=str(small_dir), **QUICK)
    assert run.returncode == 0, run.stdout + run.stderr
    manifest = modelshare.verify(folder, build="5")
    assert f"{layout.MODEL_DIR}/{layout.NOVELTY}" in manifest["files"]
    scores = np.load(folder / layout.MODEL_DIR / layout.NOVELTY)
    user_ids = json.loads((folder / layout.MODEL_DIR / layout.USER_IDS).read_text())
    assert scores.shape == (len(user_ids),) and 0 < scores.min() and scores.max() == 1.0
    card = json.loads((folder / layout.MODEL_DIR / layout.MODEL_CARD).read_text())
    assert card["novelty"]["rank"] == novelty.RANK


def test_the_fast_basis_is_the_top_singular_subspace(planted):
    """The randomized range finder stands in for an exact truncated SVD: same subspace, and the
    served percentiles of the training users agree with the exact ones."""
    from scipy.sparse.linalg import svds

    _, _, vt = svds(planted.astype(np.float64), k=novelty.RANK, random_state=0)
    exact, fast = vt.T, novelty.item_basis(planted)
    np.testing.assert_allclose(fast.T @ fast, np.eye(novelty.RANK), atol=1e-6)  # orthonormal
    # Beyond the 20 planted tastes the singular values are noise, nearly equal, so those directions
    # are not unique: what must match is the energy of the histories the basis keeps (the SVD's is
    # the most any rank-32 basis keeps).
    kept = [float(np.square(planted @ basis).sum()) for basis in (exact, fast)]
    assert kept[1] <= kept[0] * (1 + 1e-6) and kept[1] > 0.995 * kept[0], kept
    exact_errors = novelty.reconstruction_error(planted, exact)
    served, _ = novelty.user_novelty(planted)
    ranks = np.argsort(np.argsort(exact_errors, kind="stable"))
    assert np.corrcoef(ranks, np.argsort(np.argsort(served, kind="stable")))[0, 1] > 0.99
