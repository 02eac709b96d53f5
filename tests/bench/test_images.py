"""The images bench reads the provider's build out of the engine's log: its figure for "the build
through the provider" in docs/BENCHMARKS.md must span the provider's load to its last image pushed."""

from __future__ import annotations

import json

import pytest

from bench.images import provider_seconds

IMAGE = "urn:pulumi:bench::p::mlpipeline:images:Images$docker-build:index:Image::images-{app}"
DEPLOYMENT = "urn:pulumi:bench::p::kubernetes:apps/v1:Deployment::scorer"
PROVIDER = "urn:pulumi:bench::p::pulumi:providers:{name}::default"


def _line(seconds: float, message: str) -> str:
    return json.dumps({"time": f"2026-12-07T20:46:{seconds:09.6f}123Z", "level": "INFO", "msg": message})


def test_the_span_runs_from_the_provider_load_to_the_last_image_pushed():
    log = "\n".join(
        [
            "warning: not a JSON line",
            _line(10.0, f"ProviderRegistry.Check({PROVIDER.format(name='kubernetes')}) executing"),
            _line(11.0, f"ProviderRegistry.Check({PROVIDER.format(name='docker-build')}) executing"),
            _line(11.5, f"Provider[0x1].Diff({IMAGE.format(app='scorer')},sha256:ab) success: changes=2"),
            _line(11.6, f"Provider[0x1].Update(sha256:ab,{IMAGE.format(app='scorer')}) executing"),
            _line(12.25, f"Provider[0x1].Update(sha256:ab,{IMAGE.format(app='waiter')}) success; #outs=15"),
            _line(12.5, f"Provider[0x1].Create({IMAGE.format(app='trainer')}) success: id=sha256:cd"),
            _line(13.0, f"Provider[0x2].Create({DEPLOYMENT}) success"),
        ]
    )
    assert provider_seconds(log) == pytest.approx(1.5, abs=1e-5)


def test_an_up_with_nothing_to_build_ends_at_the_last_image_diff():
    log = "\n".join(
        [
            _line(1.0, f"ProviderRegistry.Check({PROVIDER.format(name='docker-build')}) executing"),
            _line(1.2, f"Provider[0x1].Diff({IMAGE.format(app='scorer')},sha256:ab) success: changes=0"),
        ]
    )
    assert provider_seconds(log) == pytest.approx(0.2, abs=1e-5)


def test_a_log_without_the_provider_is_refused():
    log = _line(1.0, f"ProviderRegistry.Check({PROVIDER.format(name='kubernetes')}) executing")
    with pytest.raises(ValueError, match="no docker-build provider"):
        provider_seconds(log)
