"""The CI/CD templates we ship for users (.github/workflows, azure-pipelines.yml): they parse, the
three flows exist with their triggers, and every `--config` key they set is one the program reads."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path} is not a YAML mapping"
    return doc


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as boolean True.
    found = workflow.get("on", workflow.get(True))
    assert isinstance(found, dict), f"the workflow's triggers are not a mapping: {found!r}"
    return found


def run_scripts(workflow: dict) -> str:
    return "\n".join(step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"])


def declared_config_keys() -> set[str]:
    config = load(ROOT / "Pulumi.yaml").get("config", {})
    return {key.split(":", 1)[-1] for key in config}


def config_keys_used(text: str) -> set[str]:
    return set(re.findall(r"--config[ =]\"?([A-Za-z][A-Za-z0-9]*)=", text))


def test_pull_request_runs_the_tests_then_a_preview():
    flow = load(WORKFLOWS / "pull-request.yml")
    assert "pull_request" in triggers(flow)
    script = run_scripts(flow)
    assert script.index("make test") < script.index("pulumi preview --stack dev")


def test_nightly_retrains_dev_with_the_run_number_as_build():
    flow = load(WORKFLOWS / "nightly.yml")
    on = triggers(flow)
    assert on["schedule"][0]["cron"] and "workflow_dispatch" in on
    script = run_scripts(flow)
    assert "pulumi up --stack dev" in script
    assert "build=${{ github.run_number }}" in script
    assert "gitSha=${{ github.sha }}" in script
    # A schedule never decides traffic: a rollback (explicit traffic) stays until a person changes it.
    assert "traffic" not in config_keys_used(script)


@pytest.mark.parametrize(
    "path", [WORKFLOWS / "nightly.yml", ROOT / "azure-pipelines.yml"], ids=lambda p: p.name
)
def test_nightly_lets_the_canary_analysis_decide_a_new_canary(path):
    text = path.read_text()
    assert '--champion "$champion"' in text and "pulumi stack output traffic --stack dev --json" in text
    analysis = text.index("python -m monitoring.canary --prometheus")
    assert analysis > text.index("--config build=")  # after the release is deployed
    assert "--window 30m" in text[analysis:] and "--run" in text[analysis:]
    assert "sleep 1800" in text  # the window is live traffic after the deploy


def test_promote_is_manual_and_targets_prod_with_the_chosen_build():
    flow = load(WORKFLOWS / "promote.yml")
    on = triggers(flow)
    assert set(on) == {"workflow_dispatch"} and on["workflow_dispatch"]["inputs"]["build"]["required"]
    assert flow["jobs"]["promote"]["environment"] == "prod"
    script = run_scripts(flow)
    assert "pulumi up --stack prod" in script and "build=${{ inputs.build }}" in script


def test_workflows_never_interpolate_secrets_or_inputs_into_scripts():
    for path in WORKFLOWS.glob("*.yml"):
        script = run_scripts(load(path))
        assert "${{ secrets." not in script, f"{path.name}: pass secrets through env, not the script text"
        assert "${{ inputs.csvFolder" not in script and "${{ inputs.traffic" not in script


def test_azure_pipelines_has_the_same_three_flows():
    pipeline = load(ROOT / "azure-pipelines.yml")
    assert pipeline["pr"]["branches"]["include"] == ["main"]
    assert pipeline["schedules"][0]["cron"]
    stages = {stage["stage"]: stage for stage in pipeline["stages"]}
    assert set(stages) == {"test", "nightly", "promote"}
    text = (ROOT / "azure-pipelines.yml").read_text()
    assert "script: make test" in text
    commands = [(m.group(1), m.group(2)) for m in re.finditer(r"command: (\w+)\n\s+stack: (\w+)", text)]
    assert commands == [("preview", "dev"), ("up", "dev"), ("up", "prod")]
    assert "build=$(Build.BuildId)" in text and "build=${{ parameters.promoteBuild }}" in text


@pytest.mark.parametrize(
    "path", sorted(WORKFLOWS.glob("*.yml")) + [ROOT / "azure-pipelines.yml"], ids=lambda p: p.name
)
def test_templates_only_set_config_keys_the_program_declares(path):
    used = config_keys_used(path.read_text())
    assert "build" in used and "gitSha" in used
    assert used <= declared_config_keys(), f"{path.name} sets undeclared keys {used - declared_config_keys()}"


# --- the templates checked by the tools made for them ---------------------------------------------
ACTIONLINT = ROOT / ".tools" / "bin" / "actionlint"  # built by `make setup` from its Go module


def actionlint(*paths: Path) -> subprocess.CompletedProcess:
    assert ACTIONLINT.exists(), f"{ACTIONLINT} is missing: `make setup` builds it"
    return subprocess.run([str(ACTIONLINT), *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_github_workflows_pass_actionlint():
    checked = actionlint(*sorted(WORKFLOWS.glob("*.yml")))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_actionlint_refuses_a_broken_workflow(tmp_path):
    broken = load(WORKFLOWS / "promote.yml")
    broken["jobs"]["promote"]["steps"].append({"run": "echo ${{ inputs.no_such_input }}"})
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    checked = actionlint(path)
    assert checked.returncode == 1 and "no_such_input" in checked.stdout
