"""The stack's namespace enforces the restricted Pod Security Standard the release pods are built for,
and denies all traffic that a release's own NetworkPolicies do not allow."""


def test_namespace_enforces_restricted_pods(local_first):
    [namespace] = local_first.k8s("Namespace")
    assert namespace["metadata"]["name"] == "mlpipeline-local"
    for mode in ("enforce", "audit", "warn"):
        assert namespace["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"] == "restricted"
    for obj in local_first.k8s():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "mlpipeline-local"


def test_namespace_denies_all_traffic_by_default(local_first):
    [deny] = [p for p in local_first.k8s("NetworkPolicy") if p["metadata"]["name"] == "default-deny"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
