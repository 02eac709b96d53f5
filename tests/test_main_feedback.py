"""The scorer's feedback settings through the program (config feedbackEvents, feedbackWindowSeconds,
feedbackKey): unset, nothing of them is rendered; set, they reach the scorer of new releases only,
the key as one Secret mounted as a file; it cannot be set in plain text nor dropped while a live
release mounts it; and a scorer played from the rendered pod issues request ids tagged with it."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import stat
import time
import urllib.request
from pathlib import Path

import pytest

import local.render
from components import feedback_key
from components.catalogue import DEFAULTS
from components.feedback_key import FeedbackKeyError
from components.settings import SettingsError
from local.demo import secrets_of
from local.play import Pod, prepare, start, stop
from tests.test_main import state_of, up

KEY = "feedback-key-for-tests-5e1d0a77c2"  # a secret config value: must never leak
CUSTOM = {"feedbackEvents": ["click", "add_to_cart"], "feedbackWindowSeconds": 3600}


def scorer_pod(rendering, build_dns):
    deployment = next(o for o in rendering.k8s("Deployment") if o["metadata"]["name"] == f"score-{build_dns}")
    return deployment, deployment["spec"]["template"]["spec"]


def container(pod, name):
    return next(c for c in [*pod["containers"], *pod.get("initContainers", [])] if c["name"] == name)


def env_of(container):
    return {e["name"]: e.get("value") for e in container["env"]}


@pytest.fixture(scope="module")
def turned_on():
    """153 without the key, then 154 with it and the other two keys set."""
    first = up("local", "153")
    return first, up("local", "154", first, feedbackKey=KEY, **CUSTOM)


def test_unset_keys_render_nothing_of_feedback():
    rendering = up("local", "153")
    _, pod = scorer_pod(rendering, "153")
    assert not [name for name in env_of(container(pod, "scorer")) if name.startswith("FEEDBACK_")]
    assert not [v for v in pod["volumes"] if "secret" in v]
    assert not rendering.k8s("Secret")


def test_the_catalogue_defaults_are_the_scorers_own(monkeypatch):
    # Unset keys are not rendered, so the scorer's defaults apply: they must be what the catalogue says.
    from scorer import settings as scorer_settings

    monkeypatch.setenv("MODELFOLDER", "/mnt/models/1")
    monkeypatch.setenv("BUILD_NUMBER", "1")
    for name in ("FEEDBACK_EVENTS", "FEEDBACK_WINDOW_SECONDS", "FEEDBACK_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    scorer = scorer_settings.from_env()
    assert list(scorer.feedback_events) == DEFAULTS["feedbackEvents"]
    assert scorer.feedback_window_seconds == DEFAULTS["feedbackWindowSeconds"]
    assert scorer.feedback_key_file is None


def test_the_keys_reach_the_new_releases_scorer_as_env_and_one_mounted_secret(turned_on):
    _, second = turned_on
    [secret] = second.k8s("Secret")
    assert (secret["metadata"]["name"], secret["metadata"]["namespace"]) == (
        "scorer-feedback-key",
        "mlpipeline-local",
    )
    assert secret["stringData"] == {"key": KEY}
    _, pod = scorer_pod(second, "154")
    scorer = container(pod, "scorer")
    env = env_of(scorer)
    assert (env["FEEDBACK_EVENTS"], env["FEEDBACK_WINDOW_SECONDS"]) == ("click,add_to_cart", "3600")
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    [mount] = [m for m in scorer["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    assert volume["secret"]["secretName"] == "scorer-feedback-key"
    [item] = volume["secret"]["items"]
    assert item["key"] == "key" and env["FEEDBACK_KEY_FILE"] == f"{mount['mountPath']}/{item['path']}"
    # Readable by the scorer's group (the pod's fsGroup owns Secret files) and no one else.
    assert int(volume["secret"]["defaultMode"]) == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    # Only the scorer reads it: the waiter mounts nothing of it, and no env holds the key itself.
    assert volume["name"] not in {m["name"] for m in container(pod, "waiter")["volumeMounts"]}
    assert KEY not in json.dumps(pod)


def test_the_keys_never_reach_a_release_rendered_before(turned_on):
    first, second = turned_on
    assert state_of(second, "153") == state_of(first, "153")
    _, pod = scorer_pod(second, "153")
    assert "FEEDBACK_KEY_FILE" not in env_of(container(pod, "scorer"))


def test_the_key_cannot_be_dropped_while_a_live_release_mounts_it(turned_on):
    _, second = turned_on
    with pytest.raises(FeedbackKeyError, match=r"feedbackKey is unset, but live release\(s\) 154 mount"):
        up("local", "155", second, **CUSTOM)
    # Once the keyed releases are retired (keepReleases 1 keeps only the new build), it can go.
    later = up("local", "155", second, keepReleases=1)
    assert not later.k8s("Secret")
    # The key kept, a new release mounts it and nothing is refused.
    kept = up("local", "155", second, feedbackKey=KEY)
    assert feedback_key.mounts_key(kept.outputs["releases"]["155"])


def test_a_feedback_key_in_plain_text_is_refused(monkeypatch):
    monkeypatch.setattr(local.render, "SECRET_KEYS", ())  # as `pulumi config set feedbackKey ...` leaves it
    with pytest.raises(SettingsError, match=r"mlpipeline:feedbackKey must be a secret.*--secret feedbackKey"):
        up("local", "153", feedbackKey=KEY)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"feedbackKey": "short key"}, "feedbackKey must hold at least 16 bytes"),
        ({"feedbackKey": "   " + "x" * 15 + "\n"}, "feedbackKey must hold at least 16 bytes"),
        ({"feedbackEvents": ["click", "Click!"]}, "feedbackEvents must be a non-empty list"),
        ({"feedbackEvents": ["click", "click"]}, "repeated: click"),
        ({"feedbackEvents": []}, "feedbackEvents must be a non-empty list"),
        ({"feedbackEvents": "click"}, "feedbackEvents must be a non-empty list"),
        ({"feedbackWindowSeconds": 0}, "feedbackWindowSeconds must be a whole number from 1 to 604800"),
    ],
)
def test_bad_feedback_config_names_the_key(config, message):
    with pytest.raises(SettingsError, match=message):
        up("local", "153", **config)


def test_a_scorer_played_from_the_rendered_pod_issues_tagged_ids(turned_on, tmp_path):
    """The pod as local/play.py runs it (env, mounts, the Secret's file with its mode): the scorer
    starts, reads the key from the mounted file and tags every request id with it."""
    _, second = turned_on
    deployment, pod_spec = scorer_pod(second, "154")
    pod = Pod.of(deployment, tmp_path / "volumes", secrets_of(second))
    process = prepare(pod, container(pod_spec, "scorer"))
    key_file = Path(process.env["FEEDBACK_KEY_FILE"])
    assert key_file.read_text() == KEY and stat.S_IMODE(key_file.stat().st_mode) == 0o440
    popen = start(process)
    try:
        url = f"http://127.0.0.1:{process.ports[8080]}/healthz"
        ids = [_request_id(url, popen) for _ in range(2)]
    finally:
        stop(popen)
        pod.cleanup()
    for rid in ids:
        match = re.fullmatch(r"154\.([0-9a-f]{24})([0-9a-f]{16})", rid)
        assert match, rid
        tag = hmac.new(KEY.encode(), rid[:-16].encode(), hashlib.sha256).hexdigest()[:16]
        assert match.group(2) == tag
    assert ids[0] != ids[1]


def _request_id(url, popen, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        assert popen.poll() is None, f"the played scorer exited with {popen.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.headers["x-request-id"]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_turning_the_key_on_beside_keyless_releases_warns_naming_them(caplog):
    first = up("local", "153")
    with caplog.at_level("WARNING"):
        up("local", "154", first, feedbackKey=KEY)
    [warning] = [r.getMessage() for r in caplog.records if "feedbackKey" in r.getMessage()]
    assert "live release(s) 153 do not" in warning and "x-model-build" in warning
    caplog.clear()
    with caplog.at_level("WARNING"):
        up("local", "153", feedbackKey=KEY)  # a first release: nothing to warn about
    assert not [r for r in caplog.records if "feedbackKey" in r.getMessage()]
