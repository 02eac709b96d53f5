"""Loading a model folder and top-k, for every artifact form of modelshare.layout."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse

import modelshare
from modelshare import IntegrityError
from scorer.model import Model, ModelError
from tests.apps.modelfolder import write_model_folder


def rewrite(model, name, value, drop):
    """Swap one artifact for another form, then re-seal the folder as the trainer would."""
    model_dir = model.path / "model"
    (model_dir / drop).unlink()
    (model.path / "complete.txt").unlink()
    if name.endswith(".npz"):
        matrix = value if scipy.sparse.isspmatrix_csc(value) else scipy.sparse.csr_matrix(value)
        scipy.sparse.save_npz(model_dir / name, matrix)
    else:
        np.save(model_dir / name, np.asarray(value, dtype=np.float32))
    modelshare.make_manifest(model.path, build=model.build)
    modelshare.mark_complete(model.path, model.build)


def check_top_k(model, loaded, k=7):
    answers = loaded.recommend(model.user_ids[:12] + ["nobody"], k)
    for answer in answers[:-1]:
        unseen = model.unseen_scores(answer.user_id)
        assert not set(answer.item_ids) & model.seen_ids(answer.user_id)
        assert answer.scores == pytest.approx(sorted(unseen.values(), reverse=True)[:k], abs=1e-4)
        assert all(unseen[i] == pytest.approx(s, abs=1e-4) for i, s in zip(answer.item_ids, answer.scores))
        assert answer.fallback is None
    assert answers[-1].fallback == "popular"
    assert answers[-1].item_ids == [model.item_ids[i] for i in model.popular[:k]]


@pytest.mark.parametrize(
    "family, form",
    [
        ("factor", "as written"),  # dense user and item vectors, memory-mapped
        ("item-item", "as written"),  # sparse user rows, sparse item-item matrix (CSR: older releases)
        ("item-item", "items as CSC"),  # as the trainer writes item-knn and rp3beta: the operand's CSR
        ("item-item", "dense items"),  # sparse user rows, dense item-item matrix
        ("item-item", "dense items, column-major"),  # as the trainer writes EASE and ease+als
        ("factor", "sparse items"),  # dense users, sparse item factors
    ],
)
def test_top_k_is_right_for_every_artifact_form(tmp_path, family, form):
    model = write_model_folder(tmp_path / "5", "5", family=family, n_users=30, n_items=25, seed=11)
    if form.startswith("dense items"):
        dense = model.item_vectors.toarray()
        dense = np.asfortranarray(dense) if form.endswith("column-major") else dense
        rewrite(model, "item_vectors.npy", dense, drop="item_vectors.npz")
        model.item_vectors = dense
    elif form == "sparse items":
        rewrite(model, "item_vectors.npz", model.item_vectors, drop="item_vectors.npy")
    elif form == "items as CSC":
        rewrite(
            model, "item_vectors.npz", scipy.sparse.csc_matrix(model.item_vectors), drop="item_vectors.npz"
        )
    loaded = Model.load(model.path, "5")
    assert loaded.family == ("factor" if family == "factor" else "item-item")
    if form == "as written" and family == "factor":
        assert isinstance(loaded.user_vectors, np.memmap)
    if form.startswith("dense items"):
        # Behind sparse user rows the item matrix is multiplied transposed, row-major: a
        # column-major file is that operand as mapped (shared by the workers), not a copy per worker.
        assert loaded._items_t.flags.c_contiguous
        assert loaded._items_t.flags.owndata == (form == "dense items")
    check_top_k(model, loaded)
    loaded.accelerate()  # scipy's kernels once ready: the same answers
    check_top_k(model, loaded)


def test_a_model_loads_without_importing_scipy(tmp_path):
    """scipy's import alone took longer than loading a MovieLens 1M release: sparse files are read
    and multiplied with numpy."""
    for family in ("factor", "item-item"):
        write_model_folder(tmp_path / family, "5", family=family, n_users=30, n_items=25, seed=11)
    code = (
        "import sys; from scorer.model import Model; "
        f"[Model.load({str(tmp_path)!r} + '/' + f, '5').recommend(['u1'], 3) "
        "for f in ('factor', 'item-item')]; "
        "print('scipy' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_k_larger_than_the_catalogue_gives_every_unseen_item(tmp_path):
    model = write_model_folder(tmp_path / "5", "5", n_items=12, per_user=4)
    answer = Model.load(model.path, "5").recommend(["u3"], 1000)[0]
    assert set(answer.item_ids) == set(model.unseen_scores("u3"))


def test_a_user_who_has_seen_everything_gets_nothing(tmp_path):
    model = write_model_folder(tmp_path / "5", "5", n_users=3, n_items=4)
    rewrite(model, "seen.npz", np.ones((3, 4)), drop="seen.npz")
    assert Model.load(model.path, "5").recommend(["u0"], 3)[0].item_ids == []


def test_artifacts_that_do_not_fit_together_are_refused(tmp_path):
    model = write_model_folder(tmp_path / "5", "5", n_users=10, n_items=8, factors=4)
    rewrite(model, "item_vectors.npy", np.ones((8, 5)), drop="item_vectors.npy")
    with pytest.raises(ModelError, match="item vectors have 5 columns, user vectors 4"):
        Model.load(model.path, "5")


def test_a_tampered_folder_is_not_loaded(tmp_path):
    model = write_model_folder(tmp_path / "5", "5")
    (model.path / "model" / "user_ids.json").write_text('["someone", "else"]')
    with pytest.raises(IntegrityError, match="user_ids.json"):
        Model.load(model.path, "5")
