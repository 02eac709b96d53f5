"""Reading the input CSVs (docs/CONTRACTS.md, section 3) into one users x items matrix, column-wise.

Per file: the header must name ``user_id`` and ``item_id``; the weight is ``weight`` if present,
else ``rating``, else 1. Bad rows are counted by reason and skipped, never guessed at:
  malformed          a row with the wrong number of fields
  missing_id         user_id or item_id empty
  bad_weight         weight not a plain decimal number (or not finite)
  non_positive_weight  weight <= 0: carries no positive feedback for an implicit model
A file that cannot be parsed, or lacks a required column, fails the run naming the file.

Duplicated (user, item) pairs are merged: weights are summed when the column is ``weight``
(repeated events add up) and the maximum is kept when all weighted files use ``rating``
(re-rating an item does not make it liked twice).
"""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from scipy import sparse

from modelshare import sha256_file
from trainer.sources import InputFile

REQUIRED = ("user_id", "item_id")
WEIGHT_COLUMNS = ("weight", "rating")
# A plain decimal number: what `float` accepts minus inf/nan/hex, so cast() never sees junk.
NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
HEADER_LIMIT = 1 << 16


class DataError(RuntimeError):
    """The input cannot be used; the message names the file and the problem."""


@dataclass
class FileReport:
    name: str
    sha256: str
    bytes: int
    weight_column: str | None
    rows_read: int = 0
    rows_rejected: int = 0
    rejected: dict = field(default_factory=dict)


@dataclass
class Interactions:
    matrix: sparse.csr_matrix  # users x items, float32, one entry per distinct pair
    user_ids: list[str]
    item_ids: list[str]
    report: dict  # the manifest's ``data`` section (without the source location)


def _header(path) -> list[str]:
    with open(path, "rb") as handle:
        head = handle.read(HEADER_LIMIT)
    line, newline, _ = head.partition(b"\n")
    if not newline and len(head) == HEADER_LIMIT:
        raise DataError("has no header line in its first 64 KiB: not a CSV file")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("is not UTF-8 text") from None
    return [name.strip() for name in next(csv.reader(io.StringIO(text)), [])]


def read_file(source: InputFile) -> tuple[pa.Array, pa.Array, np.ndarray | None, FileReport]:
    """The valid rows of one file: user ids, item ids, weights (None: no weight column).
    The report's sha256 is left for the caller, which hashes beside the parsing."""
    try:
        return _read(source)
    except DataError as exc:
        raise DataError(f"input file {source.name}: {exc}") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"input file {source.name} cannot be read: {str(exc).splitlines()[0]}") from None


def _read(source: InputFile):
    report = FileReport(source.name, "", source.path.stat().st_size, None)
    header = _header(source.path)
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise DataError(f"has no column {' or '.join(missing)} (header: {header[:10]})")
    report.weight_column = next((name for name in WEIGHT_COLUMNS if name in header), None)
    columns = [*REQUIRED, *([report.weight_column] if report.weight_column else [])]

    malformed = 0

    def skip_malformed(_row) -> str:
        nonlocal malformed
        malformed += 1
        return "skip"

    try:  # clean files, the usual case: Arrow parses the weights as numbers while reading
        table = _read_csv(source.path, columns, skip_malformed, numeric_weight=True)
    except pa.ArrowInvalid:  # some weight is not a number: read it as text and find which
        malformed = 0
        table = _read_csv(source.path, columns, skip_malformed, numeric_weight=False)
    users, items = table.column("user_id"), table.column("item_id")
    missing_id = pc.fill_null(pc.or_(_blank(users), _blank(items)), True)
    good = pc.invert(missing_id)
    rejected = {"malformed": malformed, "missing_id": pc.sum(missing_id).as_py() or 0}
    weights = None
    if report.weight_column:
        values, numeric = _numbers(table.column(report.weight_column))
        good_np = good.to_numpy(zero_copy_only=False)
        rejected["bad_weight"] = int((good_np & ~numeric).sum())
        rejected["non_positive_weight"] = int((good_np & numeric & (values <= 0)).sum())
        keep = good_np & numeric & (values > 0)
        good = pa.array(keep)
        weights = values[keep] if not keep.all() else values
    report.rows_read = table.num_rows + malformed
    report.rejected = rejected
    report.rows_rejected = sum(rejected.values())
    if report.rows_rejected == malformed:  # every parsed row is usable: no copies
        return users, items, weights, report
    return pc.filter(users, good), pc.filter(items, good), weights, report


def _read_csv(path, columns: list[str], on_malformed, numeric_weight: bool) -> pa.Table:
    types = {name: pa.string() for name in columns}
    if numeric_weight and len(columns) > len(REQUIRED):
        types[columns[-1]] = pa.float64()
    return pa_csv.read_csv(
        path,
        parse_options=pa_csv.ParseOptions(invalid_row_handler=on_malformed),
        # Only an empty field is missing: "NA", "null" or "NaN" can be real ids (Arrow's default null
        # spellings).
        convert_options=pa_csv.ConvertOptions(
            column_types=types, include_columns=columns, strings_can_be_null=True, null_values=[""]
        ),
    )


def _numbers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values, usable) of a weight column: usable = a finite plain decimal number."""
    if pa.types.is_floating(column.type):  # parsed by the reader: only empty fields are null
        values = pc.fill_null(column, 0.0).to_numpy()
        return values, pc.is_valid(column).to_numpy(zero_copy_only=False) & np.isfinite(values)
    # Text: the reader met a value it cannot parse (nor can cast(), which is stricter), so find
    # which values are numbers and cast only those.
    text = pc.utf8_trim_whitespace(column)
    usable = pc.fill_null(pc.match_substring_regex(text, NUMBER), False)
    values = pc.cast(pc.if_else(usable, text, "0"), pa.float64()).to_numpy()
    return values, usable.to_numpy() & np.isfinite(values)


def _blank(ids: pa.ChunkedArray) -> pa.ChunkedArray:
    """Empty or whitespace only (utf8_is_space is false for ""), without copying the strings."""
    return pc.or_(pc.equal(pc.utf8_length(ids), 0), pc.utf8_is_space(ids))


def _encode(parts: list) -> tuple[np.ndarray, list[str]]:
    """Dense int32 codes in order of first appearance, and the id of each code."""
    chunks = [chunk for part in parts for chunk in part.chunks]
    if sum(chunk.nbytes for chunk in chunks) > 1 << 30:  # string offsets are int32: 2 GiB at most
        chunks = [pc.cast(chunk, pa.large_string()) for chunk in chunks]
    joined = pa.chunked_array(chunks, chunks[0].type if chunks else pa.string()).combine_chunks()
    encoded = pc.dictionary_encode(joined)
    return encoded.indices.to_numpy().astype(np.int32), encoded.dictionary.to_pylist()


def read_interactions(files: list[InputFile]) -> Interactions:
    users, items, weights, reports = [], [], [], []
    # The manifest's sha256 of each input is computed beside the parsing (hashlib releases the GIL).
    with ThreadPoolExecutor(max_workers=1) as hasher:
        digests = [hasher.submit(sha256_file, source.path) for source in files]
        parsed = [read_file(source) for source in files]
        for (*_, report), digest in zip(parsed, digests):
            report.sha256 = digest.result()
    for u, i, w, report in parsed:
        users.append(u)
        items.append(i)
        weights.append(np.ones(len(u)) if w is None else w)
        reports.append(report)
    rows_used = sum(len(u) for u in users)
    if rows_used == 0:
        detail = "; ".join(f"{r.name}: {r.rows_read} rows, rejected {r.rejected}" for r in reports)
        raise DataError(f"no usable rows in the input ({detail})")

    # Hashing the ids is most of the read after parsing; Arrow releases the GIL, so both columns at once.
    with ThreadPoolExecutor(max_workers=2) as pool:
        encoded_users = pool.submit(_encode, users)
        (item_codes, item_ids), (user_codes, user_ids) = _encode(items), encoded_users.result()
    weight = np.concatenate(weights)
    kinds = {r.weight_column for r in reports if r.weight_column}
    merge = "max" if kinds == {"rating"} else "sum"
    matrix, duplicates = _aggregate(user_codes, item_codes, weight, len(user_ids), len(item_ids), merge)
    data_report = {
        "files": [vars(r) for r in reports],
        "rows_read": sum(r.rows_read for r in reports),
        "rows_rejected": sum(r.rows_rejected for r in reports),
        "rows_used": rows_used,
        "duplicate_pairs_merged": duplicates,
        "duplicates_merged_by": merge,
        "weight_columns": sorted(kinds),
        "n_users": len(user_ids),
        "n_items": len(item_ids),
        "n_interactions": int(matrix.nnz),
    }
    return Interactions(matrix, user_ids, item_ids, data_report)


def _aggregate(users, items, weight, n_users, n_items, merge) -> tuple[sparse.csr_matrix, int]:
    """One entry per (user, item), rows and columns sorted: a canonical CSR matrix."""
    if merge == "sum":  # scipy's COO -> CSR conversion sums duplicates without a global sort
        matrix = sparse.csr_matrix((weight.astype(np.float32), (users, items)), shape=(n_users, n_items))
        matrix.sum_duplicates()
        return matrix, len(users) - matrix.nnz
    key = users.astype(np.int64) * n_items + items
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    reduce = np.maximum if merge == "max" else np.add
    data = reduce.reduceat(weight[order], starts).astype(np.float32)
    unique = key[starts]
    rows, cols = unique // n_items, (unique % n_items).astype(np.int32)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    matrix = sparse.csr_matrix((data, cols, indptr), shape=(n_users, n_items))
    return matrix, len(key) - len(unique)
