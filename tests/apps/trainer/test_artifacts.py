"""The served files as the scorer maps them."""

from __future__ import annotations

import numpy as np
import pytest

from modelshare import layout
from trainer import artifacts, families

from .test_evaluation import random_matrix


@pytest.mark.parametrize(
    "family, params, operand_row_major",
    [
        # sparse user rows x the item matrix transposed: written column-major, so the scorer's
        # operand is the file as mapped, shared by its workers, with no copy at start-up
        ("ease", {"lambda": 30.0, "dropout": 0.25, "input": "log"}, True),
        # dense users x factors: implicit's row-major item factors, as they are
        ("als-plain", {"factors": 8, "regularization": 1.0, "alpha": 3.0, "iterations": 3}, False),
    ],
)
def test_dense_item_vectors_are_written_in_the_order_the_scorer_multiplies_them(
    tmp_path, family, params, operand_row_major
):
    matrix = random_matrix(users=40, items=30, seed=2)
    model = families.fit(family, params, matrix, 2, 0)
    artifacts.write_served(
        tmp_path,
        [f"u{i}" for i in range(40)],
        [f"i{i}" for i in range(30)],
        matrix,
        np.ones(30, np.float32),
        model,
        {"family": family},
        log=lambda *a, **k: None,
    )
    items = np.load(tmp_path / layout.MODEL_DIR / layout.ITEM_VECTORS_DENSE, mmap_mode="r")
    assert items.dtype == np.float32 and items.shape[0] == 30
    np.testing.assert_array_equal(items, model.item_vectors)
    assert items.T.flags.c_contiguous == operand_row_major
