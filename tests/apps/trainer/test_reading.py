"""The input CSV (docs/CONTRACTS.md, section 3): what the trainer accepts, what it counts and skips,
and what fails the run."""

from __future__ import annotations

import pytest

from trainer.reading import DataError, read_interactions
from trainer.sources import InputFile


def files(tmp_path, **contents) -> list[InputFile]:
    out = []
    for name, text in contents.items():
        path = tmp_path / f"{name}.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        out.append(InputFile(path.name, path))
    return out


def entry(matrix, data, user, item):
    return matrix[data.user_ids.index(user), data.item_ids.index(item)]


def test_reads_ids_as_strings_and_weights_as_numbers(tmp_path):
    data = read_interactions(
        files(tmp_path, a="user_id,item_id,weight,timestamp\n007,42,2.5,1\nu2,042,1e1,2\n")
    )
    assert data.user_ids == ["007", "u2"] and data.item_ids == ["42", "042"]  # never cast to ints
    assert entry(data.matrix, data, "007", "42") == 2.5 and entry(data.matrix, data, "u2", "042") == 10.0
    assert data.report["files"][0]["weight_column"] == "weight"


def test_bad_rows_are_counted_by_reason_and_skipped(tmp_path):
    text = (
        "item_id,user_id,weight\n"
        "i1,u1,3\n"
        "i2,,1\n"  # empty user id
        ",u3,1\n"  # empty item id
        "i4,   ,1\n"  # blank user id
        "i5,u5,lots\n"  # non-numeric weight
        "i6,u6,\n"  # missing weight
        "i7,u7,nan\n"  # not a finite number
        "i8,u8,-2\n"  # no positive feedback
        "i9,u9,1,surplus\n"  # wrong number of fields
        "i10,u10, 4 \n"
    )
    data = read_interactions(files(tmp_path, a=text))
    report = data.report["files"][0]
    assert report["rows_read"] == 10 and report["rows_rejected"] == 8
    assert report["rejected"] == {"malformed": 1, "missing_id": 3, "bad_weight": 3, "non_positive_weight": 1}
    assert data.report["rows_used"] == 2 and data.user_ids == ["u1", "u10"]
    assert entry(data.matrix, data, "u10", "i10") == 4.0


def test_numeric_weights_are_checked_the_same_when_arrow_parses_them(tmp_path):
    # No text weight here, so the reader's typed fast path handles it: same reasons, same counts.
    text = "user_id,item_id,rating\nu1,i1,4\nu2,i2,\nu3,i3,nan\nu4,i4,0\n,i5,2\nu6,i6,1,x\nu7,i7,2.5e0\n"
    data = read_interactions(files(tmp_path, a=text))
    report = data.report["files"][0]
    assert report["rejected"] == {"malformed": 1, "missing_id": 1, "bad_weight": 2, "non_positive_weight": 1}
    assert data.user_ids == ["u1", "u7"] and entry(data.matrix, data, "u7", "i7") == 2.5


def test_duplicates_add_up_for_weights_and_keep_the_best_rating(tmp_path):
    counts = read_interactions(files(tmp_path, a="user_id,item_id,weight\nu,i,2\nu,i,3\nu,j,1\n"))
    assert entry(counts.matrix, counts, "u", "i") == 5.0 and counts.report["duplicate_pairs_merged"] == 1
    ratings = read_interactions(files(tmp_path, b="user_id,item_id,rating\nu,i,2\nu,i,4\nu,i,3\n"))
    assert entry(ratings.matrix, ratings, "u", "i") == 4.0 and ratings.report["duplicates_merged_by"] == "max"


def test_without_a_weight_column_each_row_counts_once(tmp_path):
    data = read_interactions(
        files(tmp_path, a="user_id,item_id\nu,i\nu,i\nu,j\n", b="item_id,user_id\nj,v\n")
    )
    assert entry(data.matrix, data, "u", "i") == 2.0 and entry(data.matrix, data, "v", "j") == 1.0
    assert data.report["rows_used"] == 4 and data.report["n_interactions"] == 3


def test_a_missing_required_column_fails_naming_file_and_column(tmp_path):
    inputs = files(tmp_path, a="user_id,item_id\nu,i\n", b="user,item_id,weight\nu,i,1\n")
    with pytest.raises(DataError, match=r"input file b\.csv: has no column user_id"):
        read_interactions(inputs)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00" * 50, "not UTF-8"),
        (b"", "has no column user_id"),
        (b"user_id,item_id\nu1,i1\nu2,\xff\xfe\n", "cannot be read"),
        (b"x" * 70_000, "no header line"),
    ],
    ids=["binary", "empty", "bad-utf8-row", "no-newline"],
)
def test_an_unreadable_file_fails_naming_it(tmp_path, content, problem):
    inputs = files(tmp_path, good="user_id,item_id\nu,i\n", junk=content)
    with pytest.raises(DataError, match=rf"input file junk\.csv.*{problem}"):
        read_interactions(inputs)


def test_no_usable_rows_fails_with_the_counts(tmp_path):
    inputs = files(tmp_path, a="user_id,item_id,weight\nu,i,none\n,j,1\n", b="user_id,item_id\n")
    with pytest.raises(DataError, match=r"no usable rows.*a\.csv: 2 rows.*b\.csv: 0 rows"):
        read_interactions(inputs)


def test_ids_spelled_like_nulls_are_ids(tmp_path):
    text = "user_id,item_id,weight\nNA,null,1\nNaN,N/A,2\nu3,i3,NA\n"
    data = read_interactions(files(tmp_path, a=text))
    assert data.user_ids == ["NA", "NaN"] and data.item_ids == ["null", "N/A"]
    assert data.report["files"][0]["rejected"]["bad_weight"] == 1
