"""Interaction CSVs with planted structure, for the tests, the benchmark and the demo.

``python -m trainer.sample OUT_DIR --rows N [--files F] [--seed S]``

What is planted, so that a collaborative-filtering model has something real to find and a
popularity model does not get it for free:
- taste clusters: every item belongs to one cluster; every user has a primary and a secondary
  cluster and draws most interactions from them (75 % / 15 %), the rest from the global
  popularity (10 % noise);
- a long tail: item popularity follows a Zipf law, inside each cluster and overall;
- series: inside a cluster, items come in small series (2-6 items, like episodes or albums of one
  artist); a draw brings more items of the same series along. This item-to-item structure is
  finer than the clusters: a low-rank model blurs it, an item model sees it;
- uneven users: activity (how many rows a user has) is log-normal, and so is the user's play
  intensity; play counts are heavy-tailed (1 to thousands), so raw ``weight`` values mostly tell
  how heavy a user is and only partly how much they like an item (more plays in the primary
  cluster) — as with real play counts;
- repeats: the same (user, item) pair can occur several times, as in event logs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

PRIMARY, SECONDARY = 0.75, 0.15  # the rest of a user's rows follow global popularity
SERIES_SIZES = (2, 7)  # series have 2..6 items
SERIES_FOLLOW = 0.7  # chance each further item of the series comes along with a draw


def default_shape(rows: int) -> tuple[int, int, int]:
    """Users, items and clusters for a data set of ``rows`` rows (about 40 rows a user)."""
    users = max(50, rows // 40)
    items = max(40, rows // 50)
    clusters = max(4, min(50, items // 40))
    return users, items, clusters


def _zipf(n: int, rng: np.random.Generator, exponent: float = 0.9) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights[rng.permutation(n)]


def _draw(cdf: np.ndarray, members: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` draws from ``members`` with the probabilities whose cumulative sums are cdf."""
    picks = np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right")
    return members[np.minimum(picks, len(members) - 1)]


def _series(items: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cut the item range into consecutive series: (first item, size) of each item's series."""
    sizes = rng.integers(*SERIES_SIZES, items // SERIES_SIZES[0] + 1)
    starts = np.r_[0, np.cumsum(sizes)]
    starts = starts[starts < items]
    sizes = np.diff(np.r_[starts, items])
    which = np.repeat(np.arange(len(starts)), sizes)
    return starts[which], sizes[which]


def interactions(rows: int, *, users: int, items: int, clusters: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    series_start, series_size = _series(items, rng)
    # a series belongs to one cluster: the cluster of its first item
    item_cluster = rng.integers(0, clusters, items)[series_start]
    popularity = _zipf(items, rng)
    primary = rng.integers(0, clusters, users)
    secondary = (primary + rng.integers(1, clusters, users)) % clusters
    activity = rng.lognormal(0.0, 1.0, users)
    intensity = rng.lognormal(0.0, 1.5, users)

    # Draws: each brings 1 + Binomial(size - 1, SERIES_FOLLOW) rows; make enough, cut to `rows`.
    draws = int(rows / (1 + SERIES_FOLLOW * (np.mean(SERIES_SIZES) - 1.5))) + 16
    user, item = _draw_items(
        draws, users, clusters, item_cluster, popularity, primary, secondary, activity, rng
    )
    extra = rng.binomial(series_size[item] - 1, SERIES_FOLLOW)
    while extra.sum() + draws < rows:  # unlucky: draw more
        more_u, more_i = _draw_items(
            draws, users, clusters, item_cluster, popularity, primary, secondary, activity, rng
        )
        user, item = np.r_[user, more_u], np.r_[item, more_i]
        extra = np.r_[extra, rng.binomial(series_size[more_i] - 1, SERIES_FOLLOW)]
    length = 1 + extra
    follower = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length) > 0
    user, item = np.repeat(user, length), np.repeat(item, length)
    start, size = series_start[item[follower]], series_size[item[follower]]
    item[follower] = start + (rng.random(len(start)) * size).astype(np.int64)  # a sibling
    user, item = user[:rows], item[:rows]

    # Heavy-tailed play counts (1 .. thousands): the user's intensity times a per-row draw that is
    # larger, on average, in the user's primary cluster.
    liked = item_cluster[item] == primary[user]
    weight = 1 + np.floor(intensity[user] * rng.lognormal(np.where(liked, 1.0, 0.0), 1.5)).astype(np.int64)
    timestamp = rng.integers(1_500_000_000, 1_600_000_000, rows)
    return {
        "user": user,
        "item": item,
        "weight": weight,
        "timestamp": timestamp,
        # the planted truth, for tests that check recommendations follow tastes
        "item_cluster": item_cluster,
        "primary": primary,
        "secondary": secondary,
    }


def _draw_items(rows, users, clusters, item_cluster, popularity, primary, secondary, activity, rng):
    user = _draw(np.cumsum(activity), np.arange(users), rows, rng)
    source = rng.random(rows)
    cluster = np.where(source < PRIMARY, primary[user], secondary[user])
    noise = source >= PRIMARY + SECONDARY
    item = np.empty(rows, dtype=np.int64)
    for c in range(clusters):
        members = np.flatnonzero(item_cluster == c)
        rows_c = np.flatnonzero((cluster == c) & ~noise)
        if len(members) == 0:  # a cluster without items: its rows become noise
            noise[rows_c] = True
            continue
        item[rows_c] = _draw(np.cumsum(popularity[members]), members, len(rows_c), rng)
    item[noise] = _draw(np.cumsum(popularity), np.arange(len(popularity)), int(noise.sum()), rng)
    return user, item


def write(
    out_dir: str | Path,
    rows: int,
    *,
    files: int = 1,
    seed: int = 0,
    users: int | None = None,
    items: int | None = None,
    clusters: int | None = None,
    weight_column: str | None = "weight",
) -> list[Path]:
    """Write ``rows`` interactions as ``files`` CSVs (part-00000.csv, ...) into out_dir.
    ``weight_column`` names the numeric column ("weight" or "rating"), None leaves it out."""
    d_users, d_items, d_clusters = default_shape(rows)
    data = interactions(
        rows, users=users or d_users, items=items or d_items, clusters=clusters or d_clusters, seed=seed
    )
    user_names = pa.array([f"u{n}" for n in range(users or d_users)])
    item_names = pa.array([f"i{n}" for n in range(items or d_items)])
    columns = {
        "user_id": pc.take(user_names, pa.array(data["user"])),
        "item_id": pc.take(item_names, pa.array(data["item"])),
    }
    if weight_column:
        columns[weight_column] = pa.array(data["weight"])
    columns["timestamp"] = pa.array(data["timestamp"])
    table = pa.table(columns)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    bounds = np.linspace(0, rows, files + 1).astype(int)
    for n, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        path = out / f"part-{n:05d}.csv"
        pa_csv.write_csv(table.slice(start, stop - start), path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write part-*.csv into (created if missing)")
    parser.add_argument("--rows", type=int, required=True, help="number of interaction rows")
    parser.add_argument("--files", type=int, default=1, help="split the rows over this many CSV files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rows < 1 or args.files < 1 or args.files > args.rows:
        parser.error("--rows and --files must be >= 1, and --files <= --rows")
    for path in write(args.out_dir, args.rows, files=args.files, seed=args.seed):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
