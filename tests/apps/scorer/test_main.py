"""`python -m scorer` refuses a bad environment at once, naming the variable."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"MODELFOLDER": ""}, "MODELFOLDER"),
        ({"MODELFOLDER": "models/7"}, "MODELFOLDER"),
        ({"BUILD_NUMBER": ""}, "BUILD_NUMBER"),
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"WORKERS": "0"}, "WORKERS"),
        ({"MAX_BATCH_USERS": "many"}, "MAX_BATCH_USERS"),
    ],
)
def test_misconfiguration_exits_2_naming_the_variable(tmp_path, env, variable):
    environment = {**os.environ, "MODELFOLDER": str(tmp_path / "7"), "BUILD_NUMBER": "7", **env}
    done = subprocess.run(
        [sys.executable, "-m", "scorer"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["event"] == "config-error" and variable in record["error"]
