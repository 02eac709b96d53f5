"""Fail fast, modelled: from a Job container's decision to `pulumi up`'s error, with mocked timings.

What happens between the container's exit and the update's error is Kubernetes' and pulumi-
kubernetes' behaviour, modelled here from their documented rules and source:
- the Job controller counts a failed pod unless a podFailurePolicy rule says Ignore (pods with the
  DisruptionTarget condition: node loss, drain, preemption); once failures exceed backoffLimit it
  sets the condition Failed with reason BackoffLimitExceeded, otherwise it starts another pod;
- pulumi-kubernetes' Job await (provider/pkg/await/job.go, checker/job) fails at once on Failed with
  reason BackoffLimitExceeded or DeadlineExceeded only (a FailJob rule's reason PodFailurePolicy
  is not one of them: it would wait out the timeout), printing each pod's termination message;
  otherwise it fails at the object's pulumi.com/timeoutSeconds.
"""

KUBELET_REPORT, CONTROLLER_SYNC, WATCH = 2.0, 1.0, 1.0  # seconds; mocked


def pulumi_job_error(job, pods):
    """(seconds after the first decision, error text) for pods = [(decision time, exit code, message,
    disrupted)], each a pod the Job controller starts after the previous one failed."""
    spec, failed = job["spec"], 0
    ignored = [
        rule for rule in spec.get("podFailurePolicy", {}).get("rules", []) if rule["action"] == "Ignore"
    ]
    sub_errors = []
    for decided, _exit_code, message, disrupted in pods:
        seen = decided + KUBELET_REPORT
        sub_errors.append(f"[Pod {job['metadata']['name']}-x]: -- [Error] {message}")
        if disrupted and any(c["type"] == "DisruptionTarget" for r in ignored for c in r["onPodConditions"]):
            continue
        failed += 1
        if failed > spec["backoffLimit"]:
            at = seen + CONTROLLER_SYNC + WATCH
            return at - pods[0][0], (
                "[BackoffLimitExceeded] Job has reached the specified backoff limit; " + "; ".join(sub_errors)
            )
    return float(job["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]), "timeout"
