"""The trainer's data drift figures, read from the one place both sides share:
apps/shared/modelshare/drift_limits.py (the trainer imports it; this program's Pulumi venv has no
modelshare, so the file is loaded by path - it imports nothing). Config `drift` names these figures.
"""

from __future__ import annotations

import importlib.util

from components.build import PROJECT_ROOT

SOURCE = PROJECT_ROOT / "apps" / "shared" / "modelshare" / "drift_limits.py"


def _load() -> dict[str, tuple[float, str]]:
    spec = importlib.util.spec_from_file_location("mlpipeline_drift_limits", SOURCE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the drift limits from {SOURCE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.FIGURES)


FIGURES = _load()  # figure -> (DRIFT_WARN_* default, what it measures)
DRIFT_FIGURES = tuple(FIGURES)
