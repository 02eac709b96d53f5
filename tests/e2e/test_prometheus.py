"""The e2e Prometheus runs the shipped scrape config as a user would deploy it, only pointed at the
e2e API server and scraping faster; scenario 10 (make e2e) is where Prometheus 3 loads it for real."""

from pathlib import Path

import yaml

from components import release_spec
from e2e import prometheus


def test_the_e2e_config_is_the_shipped_one_pointed_at_the_suites_api_server(tmp_path):
    kubeconfig = tmp_path / "admin.kubeconfig"
    config = prometheus.config(kubeconfig)
    shipped = yaml.safe_load(prometheus.SCRAPE_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert [d["kubeconfig_file"] for d in job["kubernetes_sd_configs"]] == [str(kubeconfig)]
    assert job["relabel_configs"] == shipped["scrape_configs"][0]["relabel_configs"]
    assert config["global"]["scrape_interval"] == prometheus.SCRAPE_INTERVAL
    assert [Path(rule).name for rule in config["rule_files"]] == ["alerts.yml"]
    assert all(Path(rule).is_file() for rule in config["rule_files"])


def test_the_shipped_config_keeps_what_the_scorer_pods_are_annotated_with():
    """The scorer pods' prometheus.io/* annotations (monitoring: annotations) are what the shipped
    relabelling reads: keep on scrape=true, the port and path from theirs, the namespace label."""
    (job,) = yaml.safe_load(prometheus.SCRAPE_CONFIG.read_text())["scrape_configs"]
    rules = {tuple(rule.get("source_labels", [])): rule for rule in job["relabel_configs"]}
    keep = rules[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]
    assert keep["action"] == "keep" and keep["regex"] == release_spec.SCRAPE["prometheus.io/scrape"]
    address = rules[("__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port")]
    assert address["target_label"] == "__address__"
    assert rules[("__meta_kubernetes_namespace",)]["target_label"] == "namespace"
    assert set(release_spec.SCRAPE) == {"prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"}
