"""The README stays a page a newcomer reads to the end, and every file it and docs/ name exists.

Links are checked by tests/test_docs.py; this checks the paths written as code (`e2e/cluster.py`,
`components/settings.py`...), which a move or a split of a module would otherwise leave stale.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 200
DOCUMENTS = sorted([README, *ROOT.glob("docs/*.md"), ROOT / "components" / "README.md"])
# Folders of the repository a path in backticks may start with (generated ones like .e2e/ are not).
TRACKED = ("components/", "apps/", "e2e/", "local/", "bench/", "monitoring/", "tests/", "docs/", ".github/")
CODE = re.compile(r"`([^`\s<>*{}]+)`")


def named_paths(text: str) -> list[str]:
    """Repository paths written as code: `e2e/cluster.py`, `monitoring/alerts.yml`, `.github/workflows/`."""
    return [token.split("#")[0] for token in CODE.findall(text) if token.startswith(TRACKED)]


def test_the_readme_fits_in_its_line_budget():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines, more than {MAX_README_LINES}: move details to docs/"
    )


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_named_as_code_exists(document):
    missing = sorted(
        {path for path in named_paths(document.read_text(encoding="utf-8")) if not (ROOT / path).exists()}
    )
    assert not missing, f"{document.relative_to(ROOT)} names files that are not in the repository: {missing}"


def test_a_stale_path_is_caught():
    """The check itself: a path that was moved away is reported, a generated folder is not a claim."""
    text = "see `e2e/engine.py` and `e2e/no_such_module.py`; the report is `.e2e/report.json`"
    assert [path for path in named_paths(text) if not (ROOT / path).exists()] == ["e2e/no_such_module.py"]
