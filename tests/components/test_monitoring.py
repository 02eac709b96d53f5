"""Monitoring: with the Prometheus Operator, a ServiceMonitor that scrapes every release's scorer
Service (and no other) and a PrometheusRule that promtool accepts and whose traffic split makes
the no-traffic alert fire for real; with annotations, nothing but the pods' prometheus.io/*."""

import subprocess

import pytest
import yaml

from components.monitoring import ALERTS, Monitoring, MonitoringArgs, traffic_group
from local.render import render_components
from tests.monitoring.conftest import tool

SCORER_SERVICE_LABELS = {  # what release_spec puts on a release's Service (labels.recommended)
    "app.kubernetes.io/name": "scorer",
    "app.kubernetes.io/instance": "score-153",
    "app.kubernetes.io/version": "153",
    "app.kubernetes.io/component": "scoring",
    "app.kubernetes.io/part-of": "mlpipeline",
    "app.kubernetes.io/managed-by": "pulumi",
}


def monitoring(kind, weights=None, champion="152", extra_labels=None):
    weights = {"152": 90, "153": 10, "151": 0} if weights is None else weights

    def declare():
        Monitoring(
            "monitoring",
            MonitoringArgs(
                kind=kind,
                namespace="mlpipeline-dev",
                weights=weights,
                champion=champion,
                labels={"app.kubernetes.io/part-of": "mlpipeline", **(extra_labels or {})},
            ),
        )

    return render_components(declare)


def test_operator_mode_scrapes_every_release_service_and_no_other():
    rendering = monitoring("prometheus-operator", extra_labels={"release": "kube-prometheus-stack"})
    monitor = rendering.one("ServiceMonitor").inputs
    assert monitor["metadata"]["namespace"] == "mlpipeline-dev"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # the operator's selector
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= SCORER_SERVICE_LABELS.items()  # every release's Service
    assert selector["app.kubernetes.io/component"] == "scoring"  # not the router's stable Service
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["mlpipeline-dev"]}
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]


def test_the_rule_carries_the_alerts_and_the_split_and_promtool_accepts_it(tmp_path):
    rule = monitoring("prometheus-operator").one("PrometheusRule").inputs
    groups = rule["spec"]["groups"]
    assert groups[:-1] == yaml.safe_load(ALERTS.read_text())["groups"]
    assert groups[-1] == traffic_group("mlpipeline-dev", {"152": 90, "153": 10}, "152")
    assert [r["labels"] for r in groups[-1]["rules"]] == [
        {"namespace": "mlpipeline-dev", "build": "152", "role": "champion"},
        {"namespace": "mlpipeline-dev", "build": "153", "role": "canary"},
    ]  # 151, warm at 0 %, is expected to answer nothing
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    result = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rendered_split_makes_the_no_traffic_alert_fire(tmp_path):
    """promtool evaluates the rendered rule: 153 gets 10 % by the split yet answers nothing."""
    rule = monitoring("prometheus-operator").one("PrometheusRule").inputs
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    (tmp_path / "test.yml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["rules.yml"],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [
                            {
                                "series": 'scorer_model_info{namespace="mlpipeline-dev", instance="a:8080", '
                                'build="152", model_sha256="aa"}',
                                "values": "1x30",
                            },
                            {
                                "series": 'scorer_requests_total{namespace="mlpipeline-dev", '
                                'instance="a:8080", method="GET", '
                                'route="/recommendations/{user_id}", status="200"}',
                                "values": "0+540x30",
                            },
                        ],
                        "alert_rule_test": [
                            {
                                "alertname": "ScorerReleaseWithoutTraffic",
                                "eval_time": "20m",
                                "exp_alerts": [
                                    {
                                        "exp_labels": {
                                            "severity": "critical",
                                            "namespace": "mlpipeline-dev",
                                            "build": "153",
                                            "role": "canary",
                                        },
                                        "exp_annotations": {
                                            "summary": "Release 153 should get 10 % of the traffic but "
                                            "answers no request",
                                            "description": "The router's split gives this release traffic "
                                            "while the other releases answer requests and it answers none.",
                                        },
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        )
    )
    result = subprocess.run(
        [tool("promtool"), "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_annotations_mode_declares_nothing():
    rendering = monitoring("annotations")
    assert not rendering.k8s("ServiceMonitor") and not rendering.k8s("PrometheusRule")


def test_the_program_watches_its_releases_as_configured():
    from local.render import render as render_program

    plain = render_program("local", {"build": "153"})
    [deployment] = plain.k8s("Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8080"
    assert not plain.k8s("ServiceMonitor") and not plain.k8s("PrometheusRule")

    operator = render_program(
        "local",
        {"build": "153", "monitoring": "prometheus-operator", "monitoringLabels": '{"release": "kps"}'},
    )
    [monitor], [rule] = operator.k8s("ServiceMonitor"), operator.k8s("PrometheusRule")
    selected = [
        s["metadata"]["name"]
        for s in operator.k8s("Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= (s["metadata"].get("labels") or {}).items()
    ]
    assert selected == ["score-153"]  # the release's Service, not the router's or any other
    assert (
        rule["metadata"]["labels"]["release"] == "kps" and rule["metadata"]["namespace"] == "mlpipeline-local"
    )
    split = rule["spec"]["groups"][-1]["rules"]
    assert [(r["labels"]["build"], r["labels"]["role"], r["expr"]) for r in split] == [
        ("153", "champion", "vector(100)")
    ]


def test_a_bad_monitoring_setting_is_refused_naming_the_key():
    from components.settings import SettingsError
    from local.render import render as render_program

    with pytest.raises(SettingsError, match="monitoring"):
        render_program("local", {"build": "153", "monitoring": "datadog"})
    with pytest.raises(SettingsError, match="monitoringLabels"):
        render_program("local", {"build": "153", "monitoringLabels": '{"release": ["a"]}'})
