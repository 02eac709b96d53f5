"""A build: the id given to `pulumi up` and its DNS-safe form, and where its source revision comes from.

The id (153, 20180523.5) names the release in labels, annotations, the model folder and the router's
pin header; resource names use the DNS-safe form (20180523-5). Both travel together as one `Build`, so
no caller pairs an id with another build's name. The source revision recorded on a new release is the
config's gitSha, else the environment's GIT_SHA, else the checkout's HEAD (`git_sha_from_checkout`).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def dns_name(build: str) -> str:
    """The DNS-safe form of a build for resource names: 20180523.5 -> 20180523-5."""
    return re.sub(r"[._]", "-", build.lower())


@dataclass(frozen=True)
class Build:
    id: str  # as given to `pulumi up`

    @property
    def dns(self) -> str:
        return dns_name(self.id)


def git_sha_from_checkout() -> str:
    """HEAD of the checkout the program runs from, or "unknown" (no git, not a checkout)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"
