"""Stack settings: defaults, DNS-safe builds, and a clear error naming the key for every bad value."""

import json
import re

import pytest
import yaml

from components.build import PROJECT_ROOT, Build, dns_name
from components.catalogue import KEYS
from components.settings import Settings, SettingsError


def parse(**raw):
    return Settings.parse(raw, project="mlpipeline", stack="test", git_sha_fallback=lambda: "fallback-sha")


def test_defaults_make_a_local_stack_training_from_a_claim():
    s = parse(build="153")
    assert (s.cloud, s.namespace, s.keep_releases, s.min_replicas, s.max_replicas) == (
        "local",
        "mlpipeline",
        3,
        1,
        4,
    )
    assert (s.data.kind, s.data.claim, s.data.csv_folder) == ("volume", "csv-data", "")
    assert s.resources["trainer"]["limits"]["memory"] == "4Gi"
    assert s.azure_resource_group == "mlpipeline-test"
    assert s.git_sha == "fallback-sha"


def test_azure_defaults_to_the_stacks_own_blob_container():
    s = parse(build="153", cloud="azure", csvFolder="/2018/05/08/")
    assert (s.data.kind, s.data.csv_folder, s.data.account, s.data.container) == (
        "blob",
        "2018/05/08",
        None,
        None,
    )
    assert s.data.uses_store_account


@pytest.mark.parametrize(
    "build, dns", [("153", "153"), ("20180523.5", "20180523-5"), ("Nightly_7.2", "nightly-7-2")]
)
def test_dotted_builds_get_a_dns_safe_name_and_keep_the_original(build, dns):
    s = parse(build=build)
    assert s.build == Build(build) and (s.build.id, s.build.dns) == (build, dns) and dns_name(build) == dns


def test_git_sha_comes_from_config_then_env(monkeypatch):
    monkeypatch.setenv("GIT_SHA", "fromenv")
    assert parse(build="1").git_sha == "fromenv"
    assert parse(build="1", gitSha="fromconfig").git_sha == "fromconfig"


def test_maps_merge_over_defaults_and_become_env_text():
    s = parse(
        build="1",
        trainerEnv='{"TUNE_BUDGET_SECONDS": 60, "TRAIN_FAMILIES": "als", "VERBOSE": true}',
        resources='{"trainer": {"limits": {"memory": "8Gi"}}}',
    )
    assert s.trainer_env == {"TRAIN_FAMILIES": "als", "TUNE_BUDGET_SECONDS": "60", "VERBOSE": "true"}
    assert s.resources["trainer"]["limits"] == {"cpu": "2", "memory": "8Gi"}


@pytest.mark.parametrize(
    "raw, message",
    [
        ({}, "mlpipeline:build is required"),
        ({"build": "15 3"}, "mlpipeline:build must be 1-40 letters"),
        ({"build": "-153"}, "mlpipeline:build must be"),
        ({"build": "1" * 41}, "mlpipeline:build must be"),
        ({"build": "1", "cloud": "gcp"}, "mlpipeline:cloud must be one of azure, local, got 'gcp'"),
        (
            {"build": "1", "keepReleases": "zero"},
            "mlpipeline:keepReleases must be a whole number from 1 to 100",
        ),
        (
            {"build": "1", "keepReleases": "0"},
            "mlpipeline:keepReleases must be a whole number from 1 to 100, got 0",
        ),
        ({"build": "1", "namespace": "My_NS"}, "mlpipeline:namespace must be a DNS label"),
        ({"build": "1", "gateMinLift": "-1"}, "mlpipeline:gateMinLift must be a number >= 0.0"),
        ({"build": "1", "gateMinNdcg": "nan"}, "mlpipeline:gateMinNdcg must be a number >= 0.0"),
        ({"build": "1", "trainerEnv": "factors=64"}, "mlpipeline:trainerEnv must be a map"),
        (
            {"build": "1", "trainerEnv": '{"MODELFOLDER": "/x"}'},
            "mlpipeline:trainerEnv must be free of the names",
        ),
        ({"build": "1", "trainerEnv": '{"bad-name": "1"}'}, "environment variable names"),
        ({"build": "1", "trainerEnv": '{"A": {"b": 1}}'}, "a map of plain values"),
        ({"build": "1", "resources": '{"gpu": {}}'}, "mlpipeline:resources must be a map keyed by container"),
        ({"build": "1", "resources": '{"scorer": {"limits": {"memory": "lots"}}}'}, "a Kubernetes quantity"),
        ({"build": "1", "dataSource": "ftp"}, "mlpipeline:dataSource must be one of blob, volume"),
        ({"build": "1", "dataSource": "blob"}, "mlpipeline:csvFolder is required with dataSource blob"),
        (
            {"build": "1", "dataSource": "blob", "csvFolder": "a/../b"},
            "mlpipeline:csvFolder must be a relative folder",
        ),
        ({"build": "1", "dataSource": "blob", "csvFolder": "x"}, "mlpipeline:blobAccount is required"),
        (
            {"build": "1", "cloud": "azure", "csvFolder": "x", "blobAccount": "other"},
            "mlpipeline:blobKey is required",
        ),
        ({"build": "1", "blobAccount": "other"}, "only apply to dataSource blob"),
        (
            {"build": "1", "cloud": "azure", "csvFolder": "x", "dataClaim": "c"},
            "dataClaim only applies to dataSource volume",
        ),
        (
            {"build": "1", "localAccessMode": "ReadOnlyMany"},
            "mlpipeline:localAccessMode must be one of ReadWriteOnce",
        ),
        ({"build": "1", "gitSha": "not a sha"}, "mlpipeline:gitSha must be a revision id"),
    ],
)
def test_bad_config_names_the_key_and_what_is_allowed(raw, message):
    with pytest.raises(
        SettingsError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        parse(**raw)


def test_routing_and_promotion_keys():
    s = parse(build="1")
    assert (s.router, s.gateway, s.hostnames, s.traffic, s.shadow) == ("gateway", None, (), None, {})
    assert (parse(build="1", traffic="auto").traffic, parse(build="1", traffic="{}").traffic) == ("auto", {})
    assert parse(build="1", canaryPercent="10").canary_percent == 10 and s.canary_percent == 0
    assert (s.champion_tolerance, s.promote_from) == (None, None)
    s = parse(
        build="1",
        cloud="azure",
        csvFolder="x",
        router="istio",
        gateway="infra/web",
        hostnames='["reco.example.com"]',
        traffic='{"1": 100}',
        shadow='{"build": "1"}',
        championTolerance="0.02",
        promoteFrom="dev",
    )
    assert (s.router, s.gateway.namespace, s.gateway.name) == ("istio", "infra", "web")
    assert s.hostnames == ("reco.example.com",)
    assert (s.traffic, s.shadow) == ({"1": 100}, {"build": "1"})
    assert (s.champion_tolerance, s.promote_from) == (0.02, "dev")


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"router": "nginx"}, "mlpipeline:router must be one of gateway, istio, service, got 'nginx'"),
        ({"gateway": '{"namespace": "infra"}'}, "mlpipeline:gateway must be a Gateway reference"),
        ({"hostnames": '{"a": 1}'}, "mlpipeline:hostnames must be a list of host names"),
        ({"traffic": "152=100"}, "mlpipeline:traffic must be a map"),
        ({"championTolerance": "2"}, "mlpipeline:championTolerance must be a number from 0 to 1"),
        (
            {"images": "prebuilt", "cloud": "azure", "csvFolder": "2018/05/08"},
            "mlpipeline:images prebuilt needs cloud local",
        ),
        ({"images": "pull"}, "mlpipeline:images must be one of build, prebuilt, got 'pull'"),
        ({"promoteFrom": "test"}, "mlpipeline:promoteFrom must be another stack than this one"),
        ({"promoteFrom": "a b"}, "mlpipeline:promoteFrom must be a stack name"),
    ],
)
def test_bad_routing_and_promotion_config_names_the_key(raw, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        parse(build="1", **raw)


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_stack_files_set_only_known_keys_and_parse(stack):
    config = yaml.safe_load((PROJECT_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    names = {key.split(":", 1)[1] for key in config}
    assert names <= {key.name for key in KEYS}
    # As the CLI hands them over: maps as JSON, everything else as text.
    raw = {
        key.split(":", 1)[1]: json.dumps(v) if isinstance(v, dict) else str(v) for key, v in config.items()
    }
    settings = parse(build="1", **raw)
    assert settings.cloud == ("local" if stack == "local" else "azure")


def test_drift_thresholds_become_the_trainers_variables():
    from components.drift_limits import FIGURES as PROGRAM_FIGURES
    from trainer.drift import FIGURES

    assert PROGRAM_FIGURES == FIGURES  # the program reads the file the trainer imports
    s = parse(
        build="1", drift=json.dumps({"warn": {"new_user_share": 0.3}, "fail": {"item_popularity_psi": 0.25}})
    )
    assert s.drift_env == {"DRIFT_FAIL_ITEM_POPULARITY_PSI": "0.25", "DRIFT_WARN_NEW_USER_SHARE": "0.3"}
    assert parse(build="1").drift_env == {}


@pytest.mark.parametrize(
    "drift, got",
    [
        ({"stop": {"weight_psi": 1}}, "{'stop': {'weight_psi': 1}}"),
        ({"fail": {"popularity": 0.2}}, "{'fail': {'popularity': 0.2}}"),
        ({"fail": {"volume_change": -0.5}}, "{'fail': {'volume_change': -0.5}}"),
        ({"warn": {"weight_psi": "high"}}, "{'warn': {'weight_psi': 'high'}}"),
    ],
)
def test_bad_drift_thresholds_name_the_key_and_the_figures(drift, got):
    with pytest.raises(
        SettingsError,
        match=re.escape(
            "config mlpipeline:drift must be {warn: {figure: number}, "
            "fail: {figure: number}} with figures item_popularity_psi, "
        )
        + ".*"
        + re.escape(f"got {got}"),
    ):
        parse(build="1", drift=json.dumps(drift))


def test_trainer_env_cannot_set_what_config_drift_sets():
    with pytest.raises(
        SettingsError,
        match="trainerEnv must be free of the names the release sets itself .*"
        "got 'DRIFT_FAIL_NEW_USER_SHARE'",
    ):
        parse(build="1", trainerEnv=json.dumps({"DRIFT_FAIL_NEW_USER_SHARE": "0.5"}))


def test_feedback_keys_default_to_the_scorers_defaults_and_take_a_yaml_or_json_list():
    s = parse(build="1")
    assert (s.feedback_events, s.feedback_window_seconds, s.feedback_key) == (
        ("click", "purchase"),
        86400,
        None,
    )
    # A list from the stack file arrives as JSON text; the order is the scorer's (its schema's enum).
    s = parse(build="1", feedbackEvents='["purchase", "add_to_cart", "click"]', feedbackWindowSeconds="3600")
    assert (s.feedback_events, s.feedback_window_seconds) == (("purchase", "add_to_cart", "click"), 3600)


@pytest.mark.parametrize(
    "raw, message",
    [
        ('["click", "Click"]', "got 'Click'"),
        ('["click", "a b"]', "got 'a b'"),
        ('["click", "' + "x" * 33 + '"]', "1-32 characters"),
        ('["click", 7]', "got 7"),
        ('["click", "view", "click"]', "repeated: click"),
        ("[]", "a non-empty list"),
        ("click,purchase", "a non-empty list"),  # the scorer's env form is not the config's
        ('{"click": 1}', "a non-empty list"),
    ],
)
def test_bad_feedback_events_name_the_key_and_the_scorers_pattern(raw, message):
    with pytest.raises(SettingsError, match=re.escape("mlpipeline:feedbackEvents must be")) as error:
        parse(build="1", feedbackEvents=raw)
    assert message in str(error.value)


@pytest.mark.parametrize("value", ["0", "-5", "604801", "1.5", "a day"])
def test_the_feedback_window_is_a_positive_whole_number_of_seconds_up_to_a_week(value):
    with pytest.raises(SettingsError, match="mlpipeline:feedbackWindowSeconds must be a whole number from 1"):
        parse(build="1", feedbackWindowSeconds=value)
