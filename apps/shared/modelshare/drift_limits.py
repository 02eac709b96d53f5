"""The data drift figures and their default warning thresholds: the one place both sides read.

The trainer (apps/trainer/trainer/drift.py) measures each figure and warns at or above its default
unless DRIFT_WARN_<FIGURE> says otherwise; the Pulumi program (components/config_reader.py) checks
config `drift` against these names and sets DRIFT_WARN_/DRIFT_FAIL_<FIGURE> from it. The program
does not import modelshare (its Pulumi venv has only requirements.txt): it loads this file by path,
so this module imports nothing.
"""

# figure -> (DRIFT_WARN_* default, what it measures, for the card and the messages)
FIGURES: dict[str, tuple[float, str]] = {
    "item_popularity_psi": (0.1, "item popularity (PSI over the champion's popularity groups)"),
    "user_activity_psi": (0.1, "user activity (PSI of items-per-user histograms)"),
    "weight_psi": (0.1, "weights (PSI of weight histograms)"),
    "new_user_share": (0.5, "share of interactions by users the champion never saw"),
    "new_item_share": (0.2, "share of interactions on items the champion never saw"),
    "volume_change": (0.5, "change in rows used, |relative change|"),
}
