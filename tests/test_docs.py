"""The documentation a newcomer follows stays true: every relative link and anchor of the READMEs and
docs/ resolves, and every environment variable an app reads or a release sets is in docs/CONTRACTS.md."""

import re
from pathlib import Path

import pytest

from local.render import render

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "docs" / "CONTRACTS.md"
DOCUMENTS = sorted(
    [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("apps/*/README.md"),
        *ROOT.glob("components/*.md"),
    ],
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Names an app reads through a call: env_str("PORT"), os.environ.get("GIT_SHA"), _ratio("GATE_MIN_NDCG").
READ_CALL = re.compile(r"\w+\(\s*\"([A-Z][A-Z0-9_]+)\"")
INTERNAL = {
    "PROMETHEUS_MULTIPROC_DIR",
    "SCORER_HEARTBEATS",
}  # the scorer sets them for its own worker processes


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to '-'."""
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(document):
    text = document.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(ROOT)}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not broken, f"{document.relative_to(ROOT)}: " + "; ".join(broken)


def test_no_reference_leaves_the_repository():
    """The contracts used to live in a DESIGN.md outside the repository."""
    offenders = [
        str(path.relative_to(ROOT))
        for pattern in ("*.md", "*.py", "Makefile")
        for path in ROOT.rglob(pattern)
        if not {".venv", "node_modules", ".git"} & set(path.relative_to(ROOT).parts)
        and path != Path(__file__).resolve()
        and re.search(r"DESIGN\.md|Contracts? \d", path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert not offenders, f"point these at docs/CONTRACTS.md: {offenders}"


def test_every_variable_an_app_reads_is_in_the_contracts():
    contracts = CONTRACTS.read_text(encoding="utf-8")
    read = {
        name
        for path in ROOT.glob("apps/*/*/*.py")
        for name in READ_CALL.findall(path.read_text(encoding="utf-8"))
    } - INTERNAL
    assert {"MODELFOLDER", "BUILD_NUMBER", "PORT", "GATE_MIN_NDCG", "SOURCE_MODELFOLDER"} <= read
    missing = sorted(name for name in read if f"`{name}`" not in contracts)
    assert not missing, f"docs/CONTRACTS.md section 2 does not document {missing}"


@pytest.mark.parametrize(
    "config",
    [
        {},
        {
            "dataSource": "blob",
            "dataClaim": "",
            "blobAccount": "devstoreaccount1",
            "blobKey": "k",
            "blobEndpoint": "http://azurite:10000/devstoreaccount1",
            "dataContainer": "etl",
            "csvFolder": "2018/05/08",
        },
        {"feedbackKey": "k" * 16, "feedbackEvents": ["click", "view"], "feedbackWindowSeconds": 60},
    ],
    ids=["volume", "blob", "feedback"],
)
def test_every_variable_a_release_sets_is_in_the_contracts(config):
    contracts = CONTRACTS.read_text(encoding="utf-8")
    rendering = render("local", {"build": "153", **config})
    names = {
        env["name"]
        for kind in ("Job", "Deployment")
        for obj in rendering.k8s(kind)
        for pod in [obj["spec"]["template"]["spec"]]
        for container in pod.get("initContainers", []) + pod["containers"]
        for env in container.get("env", [])
    }
    assert {"MODELFOLDER", "BUILD_NUMBER", "GIT_SHA", "PORT", "WAIT_TIMEOUT_SECONDS"} <= names
    missing = sorted(name for name in names if f"`{name}`" not in contracts)
    assert not missing, f"docs/CONTRACTS.md section 2 does not document {missing}"
