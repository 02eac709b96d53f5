"""The scorer's modules import in one direction: the front (scorer.api) builds FastAPI's routes
(scorer.routes) when it needs them, and the routes know the front only by the Protocol they declare."""

import subprocess
import sys


def test_the_routes_do_not_import_the_front():
    code = "import sys, scorer.routes; print('scorer.api' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
