"""The model card: one self-contained HTML page per release (model/card.html, in the manifest like
every file), answering "is this release better, and on what data?" at a glance.

The verdict comes first (the gate's decision, then the paired gains over the champion and the
popularity baseline with their intervals), then a plot of those gains, the data the model was
trained on beside the champion's (volume, histograms, drift figures against their thresholds), the
chosen family and parameters, the training time and the provenance. Plots are small inline SVGs
drawn here: no plotting library in the image, nothing fetched when the page is opened (the scorer
serves it at GET /model-card with a policy that forbids any outside resource).
"""

from __future__ import annotations

import html
import math
import time

from trainer import drift as drift_module

INK, MUTED, GRID = "#222", "#666", "#ddd"
THIS, OTHER = "#2f6db5", "#b0b0b0"  # this build, the champion (or the baseline)
GOOD, WARN, BAD = "#1b7f3b", "#b26a00", "#b3261e"


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def signed(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


# ---- SVG ------------------------------------------------------------------------------------------


def segment(x1: float, y1: float, x2: float, y2: float, colour: str, width: int = 1, dash: str = "") -> str:
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        f'stroke-width="{width}"{dashes}/>'
    )


def forest(rows: list[tuple[str, dict | None]], width: int = 640) -> str:
    """Paired gains as points with their intervals around a zero line: right of it is better."""
    shown: list[tuple[str, dict]] = [(label, gain) for label, gain in rows if gain and gain.get("interval")]
    if not shown:
        return ""
    low = min(0.0, *(g["interval"][0] for _, g in shown))
    high = max(0.0, *(g["interval"][1] for _, g in shown))
    pad = (high - low) * 0.08 or 0.01
    low, high = low - pad, high + pad
    left, right, line = 250, width - 20, 40
    height = 30 + line * len(shown)

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (right - left)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="paired NDCG gains with intervals" font-family="sans-serif" font-size="12">',
        segment(x(0), 8, x(0), height - 18, INK, dash="3,3"),
        f'<text x="{x(0):.1f}" y="{height - 4}" text-anchor="middle" fill="{MUTED}">0 (no gain)</text>',
        f'<text x="{right}" y="{height - 4}" text-anchor="end" fill="{MUTED}">better &#8594;</text>',
    ]
    for n, (label, gain) in enumerate(shown):
        y = 22 + n * line
        lo, hi, mean = gain["interval"][0], gain["interval"][1], gain["gain"]
        colour = GOOD if lo > 0 else BAD if hi < 0 else WARN
        confidence = f"{gain.get('confidence', 0.95):.0%}"
        parts += [
            f'<text x="0" y="{y - 2}" fill="{INK}">{esc(label)}</text>',
            f'<text x="0" y="{y + 12}" fill="{MUTED}" font-size="11">'
            f"{signed(mean)} [{signed(lo)}, {signed(hi)}] ({confidence})</text>",
            segment(x(lo), y, x(hi), y, colour, 3),
            segment(x(lo), y - 6, x(lo), y + 6, colour, 2),
            segment(x(hi), y - 6, x(hi), y + 6, colour, 2),
            f'<circle cx="{x(mean):.1f}" cy="{y}" r="5" fill="{colour}"/>',
        ]
    return "".join(parts) + "</svg>"


def histogram(
    title: str, labels: list[str], series: list[tuple[str, str, list[float]]], width: int = 420
) -> str:
    """Grouped bars of shares (each series normalized to 1) over the same bins."""
    shares = []
    for name, colour, counts in series:
        total = sum(counts) or 1
        shares.append((name, colour, [c / total for c in counts]))
    used = [i for i in range(len(labels)) if any(s[2][i] > 0 for s in shares)]
    if not used:
        return ""
    used = list(range(used[0], used[-1] + 1))
    top = max(s[2][i] for s in shares for i in used) or 1
    left, bottom, height = 34, 150, 190
    slot = (width - left - 8) / len(used)
    bar = max(1.0, slot * 0.8 / len(shares))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="0" y="12" fill="{INK}" font-weight="bold">{esc(title)}</text>',
        f'<line x1="{left}" y1="{bottom}" x2="{width - 8}" y2="{bottom}" stroke="{GRID}"/>',
        f'<text x="{left - 4}" y="28" text-anchor="end" fill="{MUTED}">{top:.0%}</text>',
    ]
    for n, i in enumerate(used):
        for s, (_, colour, values) in enumerate(shares):
            h = values[i] / top * (bottom - 24)
            parts.append(
                f'<rect x="{left + n * slot + s * bar:.1f}" y="{bottom - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"/>'
            )
        if len(used) <= 12 or n % 2 == 0:
            parts.append(
                f'<text x="{left + n * slot + slot / 2:.1f}" y="{bottom + 13}" text-anchor="middle" '
                f'fill="{MUTED}">{esc(labels[i])}</text>'
            )
    for s, (name, colour, _) in enumerate(shares):
        parts += [
            f'<rect x="{left + s * 150}" y="{height - 12}" width="10" height="10" fill="{colour}"/>',
            f'<text x="{left + s * 150 + 14}" y="{height - 3}" fill="{INK}">{esc(name)}</text>',
        ]
    return "".join(parts) + "</svg>"


def _bin_labels(edges: list[float]) -> list[str]:
    def short(v: float) -> str:
        if v >= 1024:
            return f"{v / 1024:g}k"
        return f"{v:g}"

    return [f"≥{short(e)}" for e in edges]


# ---- the page ---------------------------------------------------------------------------------------


def verdict(metrics: dict, profile: dict, source: str | None) -> tuple[str, str, list[str]]:
    """(headline, colour, lines): the first thing on the page."""
    gate = metrics.get("gate") or {}
    paired = metrics.get("champion") or {}
    gain = paired.get("ndcg_gain") or {}
    lines = []
    if not gate.get("passed", True):
        headline, colour = "Below the quality gate: not to be served", BAD
        lines += gate.get("failures", [])
    elif gain.get("interval"):
        lower = gain["interval"][0]
        if lower > 0:
            headline, colour = f"Better than the champion (build {paired.get('build')})", GOOD
        else:
            headline, colour = (
                f"Not worse than the champion (build {paired.get('build')}) within the tolerance",
                WARN,
            )
    else:
        headline, colour = "Passes the quality gate (no champion compared)", GOOD
    if gain.get("interval"):
        lines.append(
            f"NDCG@{metrics.get('k')} {paired.get('model_ndcg'):.4f} against the champion's "
            f"{paired.get('champion_ndcg'):.4f} on the same {paired.get('users')} test users: paired gain "
            f"{signed(gain['gain'])}, {gain.get('confidence', 0.9):.0%} interval "
            f"[{signed(gain['interval'][0])}, {signed(gain['interval'][1])}]"
        )
    elif paired.get("error"):
        lines.append(f"champion not compared: {paired['error']}")
    popularity = metrics.get("popularity_ndcg_gain") or {}
    model_ndcg = (metrics.get("model") or {}).get("ndcg_at_k")
    popularity_ndcg = (metrics.get("popularity") or {}).get("ndcg_at_k")
    if model_ndcg is not None and popularity_ndcg is not None:
        line = (
            f"NDCG@{metrics.get('k')} {model_ndcg:.4f} against popularity's {popularity_ndcg:.4f} "
            f"(lift ×{number(metrics.get('lift_ndcg'), 2)})"
        )
        if popularity.get("interval"):
            line += (
                f", paired gain {signed(popularity['gain'])}, "
                f"{popularity.get('confidence', 0.95):.0%} interval "
                f"[{signed(popularity['interval'][0])}, {signed(popularity['interval'][1])}]"
            )
        lines.append(line)
    lines.append(
        f"trained on {number(profile.get('rows_used'))} rows: {number(profile.get('n_users'))} users, "
        f"{number(profile.get('n_items'))} items, {number(profile.get('n_interactions'))} distinct pairs, "
        f"from {source}"
    )
    drift = metrics.get("drift") or {}
    if drift:
        warnings, failures = drift.get("warnings", []), drift.get("failures", [])
        lines.append(
            "data drift against the champion's data: "
            + (
                f"{len(failures)} failing, {len(warnings)} warnings"
                if warnings or failures
                else "no figure above its warning threshold"
            )
        )
    return headline, colour, lines


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metrics_section(metrics: dict) -> str:
    names = ["precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k"]
    plain = ((metrics.get("selection") or {}).get("plain_als") or {}).get("test")
    columns = [("this model", metrics.get("model") or {}), ("popularity", metrics.get("popularity") or {})]
    if plain:
        columns.append(("best plain ALS", plain))
    rows = [
        [esc(name.replace("_at_k", f"@{metrics.get('k')}"))] + [number(doc.get(name)) for _, doc in columns]
        for name in names
    ]
    gains = [
        ("vs popularity", metrics.get("popularity_ndcg_gain")),
        ("vs best plain ALS", ((metrics.get("selection") or {}).get("plain_als") or {}).get("ndcg_gain")),
        (
            f"vs champion (build {(metrics.get('champion') or {}).get('build')})",
            (metrics.get("champion") or {}).get("ndcg_gain"),
        ),
    ]
    plot = forest(gains)
    return (
        "<h2>Quality on the test holdout</h2>"
        + (
            f"<p>Paired per-user NDCG@{metrics.get('k')} gains of this model, with their intervals "
            "(green: the whole interval above 0).</p>" + plot
            if plot
            else ""
        )
        + _table(["metric"] + [name for name, _ in columns], rows)
        + f"<p class=muted>{esc(metrics.get('protocol', ''))}</p>"
    )


def _columns(profile: dict) -> str:
    return esc(", ".join(profile.get("weight_columns") or ["none: 1 per row"]))


def _data_section(profile: dict, drift: dict | None) -> str:
    theirs = (drift or {}).get("champion_profile") or {}
    build = ((drift or {}).get("champion") or {}).get("build")
    rows = [
        ["users", number(profile.get("n_users")), number(theirs.get("n_users"))],
        ["items", number(profile.get("n_items")), number(theirs.get("n_items"))],
        [
            "interactions (distinct user-item pairs)",
            number(profile.get("n_interactions")),
            number(theirs.get("n_interactions")),
        ],
        ["rows used", number(profile.get("rows_used")), number(theirs.get("rows_used"))],
        ["weight column", _columns(profile), _columns(theirs) if theirs else "–"],
        [
            "share of interactions on the 1,000 most popular items",
            number(profile.get("top_items_share"), 3),
            number(theirs.get("top_items_share"), 3),
        ],
    ]
    out = "<h2>Training data</h2>" + _table(
        ["", "this build", f"champion (build {build})" if build else "champion"], rows
    )
    labels = _bin_labels(profile["count_edges"])
    plots = ""
    for title, key in (
        ("Users by distinct items", "user_activity"),
        ("Items by distinct users", "item_popularity"),
        ("Interactions by weight", "weights"),
    ):
        edges = profile["weight_edges"] if key == "weights" else profile["count_edges"]
        series = [("this build", THIS, profile[key])]
        if theirs.get(key):
            series.append((f"champion (build {build})", OTHER, theirs[key]))
        plots += histogram(title, labels if key != "weights" else _bin_labels(edges), series)
    out += f"<div class=plots>{plots}</div>"
    top = profile.get("top_items", [])[:10]
    out += "<p>Most popular items: " + ", ".join(f"{esc(i)} ({c:,})" for i, c in top) + "</p>"
    if drift is None:
        return out + "<p>No champion named: no drift comparison.</p>"
    if drift.get("error"):
        return out + f"<p>Data drift not measured: {esc(drift['error'])}</p>"
    warn, fail = drift["thresholds"]["warn"], drift["thresholds"]["fail"]
    rows = []
    for name, value in drift["figures"].items():
        size = drift_module.magnitude(name, value)
        state = (
            ("fail", BAD)
            if name in fail and size >= fail[name]
            else (("warn", WARN) if name in warn and size >= warn[name] else ("ok", GOOD))
        )
        rows.append(
            [
                esc(drift_module.FIGURES[name][1]),
                signed(value) if name == "volume_change" else number(value),
                number(warn.get(name), 3),
                number(fail.get(name), 3),
                f'<b style="color:{state[1]}">{state[0]}</b>',
            ]
        )
    counts = drift.get("counts", {})
    return (
        out
        + f"<h2>Data drift against the champion's data (build {esc(build)})</h2>"
        + _table(["figure", "value", "warn at", "fail at", ""], rows)
        + f"<p>{number(counts.get('new_users'))} of {number(counts.get('users'))} users and "
        f"{number(counts.get('new_items'))} of {number(counts.get('items'))} items are new to the "
        "champion.</p>"
        + "".join(
            f"<p class=warn>{esc(w)}</p>" for w in drift.get("failures", []) + drift.get("warnings", [])
        )
    )


def _model_section(metrics: dict, seconds: float) -> str:
    selection = metrics.get("selection") or {}
    rows = [
        [
            esc(name),
            number(doc.get("validation_ndcg")),
            number(doc.get("trials")),
            esc(doc["params"]) if doc.get("params") else "not tried",
        ]
        for name, doc in (selection.get("families") or {}).items()
    ]
    return (
        f"<h2>Model</h2><p>Family <b>{esc(metrics.get('family'))}</b>, parameters "
        f"<code>{esc(metrics.get('params'))}</code>. Training took {seconds:,.1f} s "
        f"(tuning {number(selection.get('seconds'), 1)} s).</p>"
        + _table(["family tried", "validation NDCG", "trials", "best parameters"], rows)
    )


STYLE = """
body{font-family:sans-serif;max-width:900px;margin:24px auto;padding:0 16px;color:#222;line-height:1.4}
.verdict{border-left:8px solid;padding:8px 16px;margin-bottom:16px;background:#f7f7f7}
.verdict h1{margin:0 0 6px 0;font-size:22px} table{border-collapse:collapse;margin:8px 0}
td,th{border-bottom:1px solid #ddd;padding:3px 10px;text-align:right}
td:first-child,th:first-child{text-align:left}
svg{display:block;margin:8px 0} .plots{display:flex;flex-wrap:wrap;gap:0 24px}
.muted{color:#666;font-size:12px} .warn{color:#b26a00} code{font-size:12px}
"""


def render(
    build: str, metrics: dict, profile: dict, drift: dict | None, provenance: dict, seconds: float
) -> str:
    """The card's HTML; ``provenance``: source, git_sha, trainer_image, files (the manifest's)."""
    headline, colour, lines = verdict(metrics, profile, provenance.get("source"))
    files = "".join(
        f"<li><code>{esc(f.get('name'))}</code> {number(f.get('rows_read'))} rows, sha256 "
        f"<code>{esc(str(f.get('sha256'))[:12])}</code></li>"
        for f in provenance.get("files") or []
    )
    written = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Model card: build {esc(build)}</title><style>{STYLE}</style></head><body>"
        f'<div class=verdict style="border-color:{colour}"><h1 style="color:{colour}">Build {esc(build)}: '
        f"{esc(headline)}</h1><ul>"
        + "".join(f"<li>{esc(line)}</li>" for line in lines)
        + "</ul></div>"
        + _metrics_section(metrics)
        + _data_section(profile, drift)
        + _model_section(metrics, seconds)
        + "<h2>Provenance</h2>"
        f"<p>Written {written} by the trainer (git {esc(provenance.get('git_sha') or 'unknown')}, image "
        f"<code>{esc(provenance.get('trainer_image') or 'unknown')}</code>) "
        f"from {esc(provenance.get('source'))}:</p>"
        f"<ul>{files}</ul><p class=muted>Every number here is in metrics.json, model/data_profile.json and "
        "model/drift.json of the same folder; manifest.json pins this page's sha256.</p></body></html>"
    )
