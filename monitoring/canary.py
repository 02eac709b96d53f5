"""`python -m monitoring.canary`: compare a canary release with the champion on live signals and
decide promote, hold or roll back, printing (or with --run, running) the `pulumi up` that does it.

The signals, over one window of the same live traffic: share of recommendation requests answered
with a 5xx, p99 latency of recommendation requests, share of users answered with the popular
fallback (users the model does not know), share of known users more atypical than 95 % of the
release's training users (scorer_novelty); and the outcome, what users did with the lists: the
feedback events of one kind (--event, default click) per list served, compared by the sequential
test of monitoring.outcomes (rolled back when the canary converts less with confidence, promoted
when it is not worse than the champion by more than --margin, held otherwise). That test stays
valid however often the command runs, provided each run's window covers the canary's life so far
(e.g. --window 6h for a canary six hours old): give it all the data, not the last half hour. With
no feedback event at all in the window (feedback not wired), the outcome is not compared.

They come from Prometheus's HTTP API (--prometheus URL: the window ends now; the build of each
series comes from scorer_model_info, as in alerts.yml; feedback names its build itself) or
straight from the scorers' /metrics (--champion 152=URL[,URL...]: every pod's address; the
command reads them, waits the window and reads them again; any pod counts feedback for any build,
so both releases' pods are added up).

Exit status: 0 promote, 3 hold (not enough traffic to judge), 4 roll back, 1 the signals could not
be read, 2 bad arguments. With --run the decision's `pulumi up` runs first (its failure is 1), its
output on stderr: stdout is only ever the JSON report.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, replace

from monitoring import outcomes

RECOMMEND = re.compile(r"^/recommendations")
EXIT = {"promote": 0, "hold": 3, "rollback": 4}


@dataclass(frozen=True)
class Signals:
    requests: float  # recommendation requests answered in the window
    error_ratio: float  # share of them answered with a 5xx
    p99_seconds: float  # NaN when no request was answered
    fallback_ratio: float  # share of users answered with the popular fallback
    novelty_ratio: float = 0.0  # share of known users answered with novelty above 0.95
    lists: float = 0.0  # users answered: lists served
    conversions: float = 0.0  # feedback events of the judged kind on those lists (any pod took them)


@dataclass(frozen=True)
class Limits:
    min_requests: float = 100.0  # fewer canary requests than this: hold, too little evidence
    error_increase: float = 0.005  # canary error share may exceed the champion's by this much
    latency_ratio: float = 1.5  # canary p99 may be this many times the champion's ...
    latency_slack: float = 0.005  # ... plus this many seconds (noise of fast answers)
    fallback_increase: float = 0.05  # canary fallback share may exceed the champion's by this
    novelty_increase: float = 0.1  # canary share of atypical users may exceed the champion's by this
    margin: float = 0.05  # outcome: promote when the canary converts at most this much less (relative)
    alpha: float = 0.05  # outcome: error rate of a rollback or a promotion, over all looks
    tau: float = 0.1  # outcome: the relative effect the test detects fastest (monitoring.outcomes)
    min_conversions: float = 50.0  # outcome: fewer conversions on either side, hold

    def design(self) -> outcomes.Design:
        return outcomes.Design(self.alpha, self.margin, self.tau, self.min_conversions)


@dataclass(frozen=True)
class Decision:
    action: str  # promote | hold | rollback
    reasons: list[str]
    traffic: dict[str, int] | None  # the split to apply; None to change nothing


def decide(
    champion_build: str, champion: Signals, canary_build: str, canary: Signals, limits: Limits
) -> Decision:
    """The rule: enough canary traffic first, then each signal against the champion's."""
    if canary.requests < limits.min_requests or champion.requests < limits.min_requests:
        return Decision(
            "hold",
            [
                f"too little traffic to judge: canary {canary.requests:.0f}, champion "
                f"{champion.requests:.0f} recommendation requests in the window "
                f"(need {limits.min_requests:.0f} each)"
            ],
            None,
        )
    reasons = []
    if canary.error_ratio > champion.error_ratio + limits.error_increase:
        reasons.append(f"error share {canary.error_ratio:.2%} vs champion {champion.error_ratio:.2%}")
    latency_limit = champion.p99_seconds * limits.latency_ratio + limits.latency_slack
    if canary.p99_seconds > latency_limit:
        reasons.append(
            f"p99 latency {canary.p99_seconds * 1000:.1f} ms "
            f"vs champion {champion.p99_seconds * 1000:.1f} ms (limit {latency_limit * 1000:.1f} ms)"
        )
    if canary.fallback_ratio > champion.fallback_ratio + limits.fallback_increase:
        reasons.append(
            f"fallback share {canary.fallback_ratio:.2%} vs champion {champion.fallback_ratio:.2%}"
        )
    if canary.novelty_ratio > champion.novelty_ratio + limits.novelty_increase:
        reasons.append(
            f"atypical-user share {canary.novelty_ratio:.2%} vs champion {champion.novelty_ratio:.2%}"
        )
    if reasons:
        return Decision("rollback", reasons, {champion_build: 100})
    healthy = "no signal worse than the champion's beyond its limit"
    if canary.conversions == 0 and champion.conversions == 0:
        return Decision(
            "promote", [healthy, "no feedback events: outcomes not compared"], {canary_build: 100}
        )
    outcome = outcomes.compare(
        champion.lists, champion.conversions, canary.lists, canary.conversions, limits.design()
    )
    if outcome.action == "rollback":
        return Decision("rollback", [outcome.reason], {champion_build: 100})
    if outcome.action == "hold":
        return Decision("hold", [outcome.reason], None)
    return Decision("promote", [healthy, outcome.reason], {canary_build: 100})


def pulumi_command(stack: str | None, traffic: dict[str, int]) -> list[str]:
    command = ["pulumi", "up", "--yes", "--skip-preview"]
    if stack:
        command += ["--stack", stack]
    return command + ["--config", "traffic=" + json.dumps(traffic, separators=(",", ":"))]


# ---- signals from Prometheus ------------------------------------------------------------------


def _release_info(build: str, namespace: str | None) -> str:
    """The info series of one release's pods: they carry the build (as alerts.yml joins it)."""
    matchers = f'build="{build}"' + (f', namespace="{namespace}"' if namespace else "")
    return f"max by (instance, build) (scorer_model_info{{{matchers}}})"


def _by_build(expr: str, release: str) -> str:
    """expr per pod, summed over the pods of the release."""
    return f"sum(({expr}) * on (instance) group_left (build) {release})"


class PrometheusSource:
    def __init__(
        self, url: str, window: str, namespace: str | None = None, event: str = "click", timeout: float = 30.0
    ):
        self.url, self.window, self.namespace, self.timeout = url.rstrip("/"), window, namespace, timeout
        self.event = event

    def query(self, expr: str) -> float:
        """The value of an instant query that yields at most one sample; 0 when it yields none."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=self.timeout) as reply:
            doc = json.load(reply)
        if doc.get("status") != "success":
            raise RuntimeError(f"Prometheus refused {expr!r}: {doc.get('error')}")
        result = doc["data"]["result"]
        if len(result) > 1:
            raise RuntimeError(f"{expr!r} yields {len(result)} series, expected one")
        return float(result[0]["value"][1]) if result else 0.0

    def signals(self, build: str) -> Signals:
        w, release = self.window, _release_info(build, self.namespace)
        route = 'route=~"/recommendations.*"'
        requests = self.query(_by_build(f"increase(scorer_requests_total{{{route}}}[{w}])", release))
        errors = self.query(
            _by_build(f'increase(scorer_requests_total{{{route}, status=~"5.."}}[{w}])', release)
        )
        users = self.query(_by_build(f"increase(scorer_predictions_total[{w}])", release))
        fallbacks = self.query(_by_build(f"increase(scorer_fallbacks_total[{w}])", release))
        buckets = (
            f"sum by (le) (increase(scorer_request_duration_seconds_bucket{{{route}}}[{w}]) "
            f"* on (instance) group_left (build) {release})"
        )
        p99 = self.query(f"histogram_quantile(0.99, {buckets})") if requests else math.nan
        known = self.query(_by_build(f"increase(scorer_novelty_count[{w}])", release))
        typical = self.query(_by_build(f'increase(scorer_novelty_bucket{{le="0.95"}}[{w}])', release))
        # Feedback names the build that served the list; any pod (of any release) may have taken it.
        matchers = f'served_by="{build}", event="{self.event}"'
        matchers += f', namespace="{self.namespace}"' if self.namespace else ""
        conversions = self.query(f"sum(increase(scorer_feedback_total{{{matchers}}}[{w}]))")
        return Signals(
            requests,
            _ratio(errors, requests),
            p99,
            _ratio(fallbacks, users),
            _ratio(known - typical, known),
            users,
            conversions,
        )


# ---- signals from the scorers' /metrics ---------------------------------------------------------


class Snapshot:
    """The counters of the recommendation routes, added up over the pods of one release."""

    def __init__(self, urls: list[str], timeout: float = 10.0):
        from prometheus_client.parser import text_string_to_metric_families

        self.requests = self.errors = self.users = self.fallbacks = self.known = self.typical = 0.0
        self.buckets: dict[float, float] = {}
        self.feedback: dict[tuple[str, str], float] = {}  # (served_by, event): events counted
        for url in urls:
            with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=timeout) as reply:
                text = reply.read().decode("utf-8")
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    self._add(sample.name, sample.labels, sample.value)

    def _add(self, name: str, labels: dict, value: float) -> None:
        if name == "scorer_predictions_total":
            self.users += value
        elif name == "scorer_fallbacks_total":
            self.fallbacks += value
        elif name == "scorer_novelty_count":
            self.known += value
        elif name == "scorer_novelty_bucket":
            if labels.get("le") == "0.95":
                self.typical += value
        elif name == "scorer_feedback_total":
            key = (labels.get("served_by", ""), labels.get("event", ""))
            self.feedback[key] = self.feedback.get(key, 0.0) + value
        elif not RECOMMEND.match(labels.get("route", "")):
            return
        elif name == "scorer_requests_total":
            self.requests += value
            if labels.get("status", "").startswith("5"):
                self.errors += value
        elif name == "scorer_request_duration_seconds_bucket":
            le = float(labels["le"])
            self.buckets[le] = self.buckets.get(le, 0.0) + value

    def since(self, before: Snapshot) -> Signals:
        requests = self.requests - before.requests
        buckets = {le: count - before.buckets.get(le, 0.0) for le, count in self.buckets.items()}
        return Signals(
            requests,
            _ratio(self.errors - before.errors, requests),
            quantile(0.99, buckets),
            _ratio(self.fallbacks - before.fallbacks, self.users - before.users),
            _ratio((self.known - before.known) - (self.typical - before.typical), self.known - before.known),
            self.users - before.users,
        )

    def feedback_since(self, before: Snapshot, build: str, event: str) -> float:
        key = (build, event)
        return self.feedback.get(key, 0.0) - before.feedback.get(key, 0.0)


def quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile over cumulative bucket counts {upper bound: count}:
    linear within the bucket the rank falls in; the highest finite bound when it falls in +Inf."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return math.nan
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below) if count > below else bound
        lower, below = bound, count
    return lower


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


# ---- the command --------------------------------------------------------------------------------


def _release(text: str) -> tuple[str, list[str]]:
    build, _, urls = text.partition("=")
    return build, [url for url in urls.split(",") if url]


def _seconds(window: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m|h)", window)
    if not match:
        raise argparse.ArgumentTypeError(f"window must look like 90s, 30m or 1h, got {window!r}")
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m monitoring.canary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--champion", required=True, help="build, or build=URL[,URL...] without --prometheus")
    parser.add_argument("--canary", required=True, help="build, or build=URL[,URL...] without --prometheus")
    parser.add_argument("--prometheus", help="Prometheus base URL; else the scorers' /metrics are read")
    parser.add_argument(
        "--namespace",
        help="with --prometheus: the releases' namespace, when one "
        "Prometheus watches several stacks (dev and prod both run build 153)",
    )
    parser.add_argument(
        "--window",
        default="30m",
        help="how much live traffic to judge (default 30m); for the outcome test, the canary's age",
    )
    parser.add_argument(
        "--event", default="click", help="the feedback event whose rate is judged (default click)"
    )
    parser.add_argument("--stack", help="the Pulumi stack of the pulumi up (default: the selected one)")
    parser.add_argument("--run", action="store_true", help="run the pulumi up instead of printing it")
    limits = Limits()
    for name in asdict(limits):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(limits, name))
    args = parser.parse_args(argv)
    try:
        args.window_seconds = _seconds(args.window)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    args.champion, args.champion_urls = _release(args.champion)
    args.canary, args.canary_urls = _release(args.canary)
    if not args.champion or not args.canary or args.champion == args.canary:
        parser.error("--champion and --canary must name two different builds")
    if not args.prometheus and not (args.champion_urls and args.canary_urls):
        parser.error("without --prometheus, give every pod's URL: --champion 152=http://...,http://...")
    args.limits = Limits(**{name: getattr(args, name) for name in asdict(limits)})
    return args


def measure(args) -> tuple[Signals, Signals]:
    if args.prometheus:
        source = PrometheusSource(args.prometheus, args.window, args.namespace, args.event)
        return source.signals(args.champion), source.signals(args.canary)
    before = Snapshot(args.champion_urls), Snapshot(args.canary_urls)
    time.sleep(args.window_seconds)
    after = Snapshot(args.champion_urls), Snapshot(args.canary_urls)

    def conversions(build: str) -> float:  # taken by the pods of either release
        return sum(now.feedback_since(then, build, args.event) for now, then in zip(after, before))

    return (
        replace(after[0].since(before[0]), conversions=conversions(args.champion)),
        replace(after[1].since(before[1]), conversions=conversions(args.canary)),
    )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        champion, canary = measure(args)
    except (OSError, urllib.error.URLError, RuntimeError, ValueError) as exc:
        print(f"canary: could not read the signals: {exc}", file=sys.stderr)
        return 1
    decision = decide(args.champion, champion, args.canary, canary, args.limits)
    command = pulumi_command(args.stack, decision.traffic) if decision.traffic else None
    report = {
        "decision": decision.action,
        "reasons": decision.reasons,
        "window": args.window,
        "champion": {"build": args.champion, **asdict(champion)},
        "canary": {"build": args.canary, **asdict(canary)},
        "command": shlex.join(command) if command else None,
    }
    print(_dump(report))
    # The same for a human reading the job's log (stdout stays one JSON document).
    print(
        f"canary {args.canary} vs champion {args.champion}: {decision.action}: {'; '.join(decision.reasons)}",
        file=sys.stderr,
    )
    if command:
        print(("running: " if args.run else "to apply it: ") + shlex.join(command), file=sys.stderr)
    if command and args.run:
        # pulumi's progress goes to stderr with the rest of the human log: stdout is the report
        if subprocess.run(command, stdout=sys.stderr).returncode != 0:
            print(f"canary: {shlex.join(command)} failed", file=sys.stderr)
            return 1
    return EXIT[decision.action]


def _dump(report: dict) -> str:
    """JSON with NaN (no request answered) written as null."""

    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        return value

    return json.dumps(clean(report), indent=2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
