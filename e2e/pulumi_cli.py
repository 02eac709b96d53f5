"""`pulumi` as the e2e suites run it: the toolchain's CLI in a throwaway project folder.

The project folder (`.e2e/engine/project`) holds the repo's Pulumi.yaml with the program at the repo
root and the virtualenv at the repo's .venv; the stacks live on a file backend (`.e2e/engine/state`)
with a passphrase secrets provider, and plugins are never downloaded. Every run is logged to
`.e2e/engine/logs/` and recorded (arguments, exit code, seconds) for the report. Also here: reading
what a `pulumi preview --json` plans.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".e2e" / "engine"
PASSPHRASE = "e2e-only-passphrase"  # guards the throwaway state's secrets; nothing else


class PulumiError(AssertionError):
    pass


@dataclass
class Pulumi:
    """`pulumi` in the e2e project folder, with the toolchain first on PATH; `stack` is the one its
    commands address unless told otherwise."""

    bin: Path
    kubeconfig: Path
    stack: str
    home: Path = HOME
    runs: list[dict] = field(default_factory=list)
    docker_config: Path | None = None  # the buildx builders the image builds use (e2e/buildkit.py)

    @property
    def project(self) -> Path:
        return self.home / "project"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PULUMI_HOME": str(self.home / "pulumi-home"),
            "PULUMI_BACKEND_URL": f"file://{self.home / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            "KUBECONFIG": str(self.kubeconfig),
            "NO_COLOR": "1",
            "PULUMI_DEBUG_COMMANDS": "true",  # `up --event-log` exists only with it
            **({"DOCKER_CONFIG": str(self.docker_config)} if self.docker_config else {}),
        }

    def prepare(self) -> None:
        """The project folder: the repo's Pulumi.yaml pointed at the repo and its .venv (the file
        backend, Pulumi's home and the logs beside it)."""
        for folder in ("project", "state", "pulumi-home", "logs"):
            (self.home / folder).mkdir(parents=True, exist_ok=True)
        project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
        project["main"] = os.path.relpath(ROOT, self.project)
        project["runtime"]["options"]["virtualenv"] = os.path.relpath(ROOT / ".venv", self.project)
        (self.project / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))

    def __call__(
        self, *args: str, stack: str | None = "", check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        """Run `pulumi <args>` on `stack` ("": this CLI's stack; None: no --stack flag)."""
        command = ["pulumi", *args, "--non-interactive"]
        if stack is not None:
            command += ["--stack", stack or self.stack]
        number = len(self.runs) + 1
        log = self.home / "logs" / f"{number:02d}-{args[0]}.log"
        start = time.monotonic()
        done = subprocess.run(
            command,
            cwd=self.project,
            env=self.env(),
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        seconds = round(time.monotonic() - start, 2)
        log.write_text(
            f"$ {' '.join(command)}\n# exit {done.returncode} in {seconds} s\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}\n"
        )
        self.runs.append({"args": list(args), "exit": done.returncode, "seconds": seconds, "log": str(log)})
        if check and done.returncode != 0:
            tail = (done.stdout + done.stderr)[-4000:]
            raise PulumiError(f"`pulumi {' '.join(args)}` exited {done.returncode} (log {log}):\n{tail}")
        return done

    def seconds(self) -> float:
        return self.runs[-1]["seconds"]

    def outputs(self, stack: str = "") -> dict:
        return json.loads(self("stack", "output", "--json", "--show-secrets", stack=stack).stdout or "{}")

    def new_stack(self, name: str, config: dict) -> None:
        self("stack", "init", name, "--secrets-provider", "passphrase", stack=None)
        path = self.project / f"Pulumi.{name}.yaml"
        existing = yaml.safe_load(path.read_text()) if path.exists() else {}
        existing = existing or {}
        existing.setdefault("config", {}).update(config)
        path.write_text(yaml.safe_dump(existing, sort_keys=False))

    def up(
        self, *config: str, stack: str = "", check: bool = True, replace: str | None = None
    ) -> subprocess.CompletedProcess:
        """`pulumi up` with `config` (and `--replace` of one URN); the engine's events go to
        `event_log` (read by image_checks)."""
        flags = [flag for pair in config for flag in ("--config", pair)]
        flags += ["--replace", replace] if replace is not None else []
        self.event_log.unlink(missing_ok=True)
        flags += ["--event-log", str(self.event_log)]
        return self("up", "--yes", "--skip-preview", *flags, stack=stack, check=check, timeout=900)

    @property
    def event_log(self) -> Path:
        """The last `up`'s engine events, one JSON object a line."""
        return self.home / "logs" / "last-up-events.jsonl"

    def preview_json(self, *config: str, stack: str = "") -> dict:
        flags = [flag for pair in config for flag in ("--config", pair)]
        done = self("preview", "--diff", "--json", *flags, stack=stack, timeout=600)
        return json.loads(done.stdout)


def preview_steps(preview: dict) -> list[dict]:
    """The steps of a `pulumi preview --json` that change something (reads of StackReferences aside)."""
    return [step for step in preview.get("steps", []) if step.get("op") not in ("same", "read")]


def urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]
