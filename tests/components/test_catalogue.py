"""The settings catalogue is the one source of every key: Pulumi.yaml's config block and the README's
table are generated from it, and a stale copy fails `make test` naming the command that fixes it."""

import shutil
import subprocess
import sys

import pytest
import yaml

from components import catalogue
from components.build import PROJECT_ROOT
from components.catalogue import KEYS


def test_the_generated_files_are_current():
    stale = [str(path.relative_to(PROJECT_ROOT)) for path in catalogue.stale()]
    assert not stale, f"{stale} are stale: run `python -m components.catalogue --write`"


def test_pulumi_yaml_declares_every_key_with_the_programs_defaults():
    project = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "mlpipeline"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    declared = project["config"]
    assert set(declared) == {key.name for key in KEYS if not key.secret}
    for key in KEYS:
        if key.secret:
            continue
        entry = declared[key.name]
        assert entry["description"] == key.description, key.name
        assert entry.get("type") == key.type, key.name
        assert entry.get("default") == key.default, key.name
    # The CLI treats a declared key without default as required: only `build` is.
    assert [name for name, entry in declared.items() if "default" not in entry] == ["build"]


def test_each_description_is_in_each_generated_file_once():
    texts = {path: path.read_text() for path in (catalogue.PULUMI_YAML, catalogue.README)}
    for key in KEYS:
        assert texts[catalogue.README].count(f"| {key.description} |") == 1, key.name
        if not key.secret:
            assert texts[catalogue.PULUMI_YAML].count(f"  {key.name}:\n") == 1, key.name


@pytest.fixture
def copy_of_the_generated_files(tmp_path, monkeypatch):
    """Pulumi.yaml and components/README.md copied to tmp_path, the catalogue pointed at the copies."""
    pulumi_yaml, readme = tmp_path / "Pulumi.yaml", tmp_path / "README.md"
    shutil.copy(catalogue.PULUMI_YAML, pulumi_yaml)
    shutil.copy(catalogue.README, readme)
    monkeypatch.setattr(catalogue, "PULUMI_YAML", pulumi_yaml)
    monkeypatch.setattr(catalogue, "README", readme)
    monkeypatch.setattr(catalogue, "PROJECT_ROOT", tmp_path)
    return pulumi_yaml, readme


def test_a_description_edited_in_the_catalogue_makes_both_files_stale_until_written(
    copy_of_the_generated_files, monkeypatch
):
    pulumi_yaml, readme = copy_of_the_generated_files
    before = readme.read_text()
    edited = tuple(
        catalogue.Key(k.name, "How many releases stay deployed.", k.default, k.type)
        if k.name == "keepReleases"
        else k
        for k in KEYS
    )
    monkeypatch.setattr(catalogue, "KEYS", edited)
    assert catalogue.stale() == [pulumi_yaml, readme]
    assert catalogue.main(["--check"]) == 1
    assert catalogue.write() == [pulumi_yaml, readme]
    assert catalogue.stale() == []
    assert yaml.safe_load(pulumi_yaml.read_text())["config"]["keepReleases"]["description"] == (
        "How many releases stay deployed."
    )
    # Only the table changed: the prose around it is kept as written.
    after = readme.read_text()
    assert after.split(catalogue.TABLE_START)[0] == before.split(catalogue.TABLE_START)[0]
    assert after.split(catalogue.TABLE_END)[1] == before.split(catalogue.TABLE_END)[1]
    assert "| `keepReleases` | 3 | How many releases stay deployed. |" in after


def test_a_readme_without_the_markers_is_named(copy_of_the_generated_files):
    _, readme = copy_of_the_generated_files
    readme.write_text(readme.read_text().replace(catalogue.TABLE_START, ""))
    with pytest.raises(catalogue.StaleError, match="lacks the markers of the generated table"):
        catalogue.stale()


def test_the_command_checks_from_the_repository_root():
    result = subprocess.run(
        [sys.executable, "-m", "components.catalogue", "--check"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "")
    wrong = subprocess.run(
        [sys.executable, "-m", "components.catalogue"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert wrong.returncode == 2 and "--write | --check" in wrong.stderr
