"""The stack's namespace enforces the restricted Pod Security Standard the release pods are built for."""


def test_namespace_enforces_restricted_pods(local_first):
    [namespace] = local_first.k8s("Namespace")
    assert namespace["metadata"]["name"] == "mlpipeline-local"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in local_first.k8s():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "mlpipeline-local"
