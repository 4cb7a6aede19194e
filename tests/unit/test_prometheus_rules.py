"""The chart's PrometheusRule alerts, tested as rules rather than as text: the rule groups
rendered by `helm template` are checked and evaluated by `promtool test rules` against
series that cross each threshold for long enough (the alert fires, with its labels and
rendered annotations) and series that do not (just under the threshold, or over it for
less than `for:`).

Rendered twice: with the chart's ServiceMonitor (the expressions are scoped to the delivery
Service's job, so another release's series must not fire) and without (any job).

promtool is built once per machine by `make install` (`webhook-operator cluster build`);
without it these tests fail and say so, they never skip.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook_operator.devcluster import binaries, chart

RULE_FILE = "webhook-operator-rules.yaml"
RELEASE_NS = chart.NAMESPACE
JOB = "webhook-operator-delivery"
OTHER_JOB = "other-release-delivery"
SEVERITY = "warning"

VARIANTS: dict[str, dict[str, Any]] = {
    # The job selector is set only when the chart's ServiceMonitor does the scraping.
    "service-monitor": {
        "monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
    },
    "scraped-otherwise": {"monitoring": {"prometheusRule": {"enabled": True}}},
}


# -- promtool and the rendered rules ----------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> Path:
    path = binaries.promtool_path()
    if not path.exists():
        pytest.fail(
            f"promtool {binaries.PROMTOOL_VERSION} is missing ({path}): the chart's alerts "
            "cannot be tested. Run `make install` (or `.venv/bin/webhook-operator cluster "
            "build`), which builds it once with `go install "
            f"{binaries.PROMTOOL_MODULE}@{binaries.PROMTOOL_VERSION}`.",
            pytrace=False,
        )
    return path


@functools.cache
def rule_groups(variant: str) -> list[dict[str, Any]]:
    docs = chart.documents(chart.render(VARIANTS[variant]))
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert len(rules) == 1, f"{variant}: {len(rules)} PrometheusRule objects"
    return list(rules[0]["spec"]["groups"])


def alert_names(variant: str) -> set[str]:
    return {r["alert"] for g in rule_groups(variant) for r in g["rules"] if "alert" in r}


def promtool_run(promtool: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def write_rule_file(directory: Path, variant: str) -> Path:
    path = directory / RULE_FILE
    path.write_text(yaml.safe_dump({"groups": rule_groups(variant)}, sort_keys=False))
    return path


# -- cases ------------------------------------------------------------------------------------


def series(name: str, **labels: str) -> str:
    inner = ", ".join(f'{key}="{value}"' for key, value in labels.items())
    return f"{name}{{{inner}}}"


@dataclass
class Case:
    """One promtool test: series sampled every minute and, per evaluation time, the alerts
    expected to be firing (an empty list: none)."""

    name: str
    input_series: dict[str, str]
    expect: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)

    def promtool_test(self, alertname: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in self.input_series.items()],
            "alert_rule_test": [
                {"eval_time": at, "alertname": alertname, "exp_alerts": alerts}
                for at, alerts in self.expect
            ],
        }


def expected(annotations: dict[str, str], **labels: str) -> dict[str, Any]:
    return {"exp_labels": {**labels, "severity": SEVERITY}, "exp_annotations": annotations}


def scrape_labels(job: str, pod: str) -> dict[str, str]:
    """The target labels Prometheus adds to every series of a delivery pod."""
    return {"job": job, "instance": f"{pod}:9090", "pod": pod, "service": job}


# WebhookEndpointFailing ---------------------------------------------------------------------

ATTEMPTS = "webhook_delivery_attempts_total"


def attempts(namespace: str, endpoint: str, outcome: str, pod: str = "a", job: str = JOB) -> str:
    labels = {
        **scrape_labels(job, pod),
        # honorLabels: the endpoint's namespace, not the pod's.
        "namespace": namespace,
        "endpoint": endpoint,
        "outcome": outcome,
    }
    return series(ATTEMPTS, **labels)


def failing(namespace: str, endpoint: str) -> dict[str, Any]:
    return expected(
        {
            "summary": f"Webhook endpoint {namespace}/{endpoint} is failing",
            "description": (
                f"Every delivery attempt to WebhookEndpoint {namespace}/{endpoint} in the last "
                f"15 minutes failed, and none succeeded. kubectl describe webhookendpoint "
                f"{endpoint} -n {namespace} shows the last error and HTTP status."
            ),
        },
        namespace=namespace,
        endpoint=endpoint,
    )


def failing_cases(scoped: bool) -> list[Case]:
    # prometheus_client creates an outcome's series at its first attempt, with value 1.
    cases = [
        Case(
            "only failures for 20m: fires once failing for 5m",
            {attempts("shop", "orders", "retry"): "1+1x20"},
            [("4m", []), ("20m", [failing("shop", "orders")])],
        ),
        Case(
            "retries then gone, both failures",
            {
                attempts("shop", "orders", "retry"): "1+1x10",
                attempts("shop", "orders", "gone"): "_x10 1x10",
            },
            [("20m", [failing("shop", "orders")])],
        ),
        Case(
            "failures with the endpoint's first success in the window (on another replica)",
            {
                attempts("shop", "orders", "retry", pod="a"): "1+1x20",
                attempts("shop", "orders", "success", pod="b"): "_x9 1x11",
            },
            [("20m", [])],
        ),
        Case(
            "firing, then the endpoint's first success clears it at the next evaluation",
            {
                attempts("shop", "orders", "retry"): "1+1x30",
                attempts("shop", "orders", "success"): "_x25 1x5",
            },
            [("24m", [failing("shop", "orders")]), ("25m", [])],
        ),
        Case(
            "a single failed attempt counts (its series appears at 1 and stays)",
            {attempts("shop", "orders", "retry"): "_x5 1x15"},
            [("9m", []), ("10m", [failing("shop", "orders")]), ("20m", [])],
        ),
        Case(
            "failures with one more success in the window (an old success series)",
            {
                attempts("shop", "orders", "retry"): "1+1x20",
                attempts("shop", "orders", "success"): "7x10 8x10",
            },
            [("20m", [])],
        ),
        Case(
            "an old success (before the window) does not hide failures",
            {
                attempts("shop", "orders", "retry"): "_x10 1+1x20",
                attempts("shop", "orders", "success"): "3x30",
            },
            [("30m", [failing("shop", "orders")])],
        ),
        Case(
            "failures stopped: resolved once the 15m window holds none",
            {attempts("shop", "orders", "retry"): "1+1x10 11x30"},
            [("12m", [failing("shop", "orders")]), ("26m", []), ("40m", [])],
        ),
        Case(
            "a first failed attempt, then a success within 5m (less than for:)",
            {
                attempts("shop", "orders", "retry"): "_x16 1x10",
                attempts("shop", "orders", "success"): "_x19 1x7",
            },
            [("19m", []), ("25m", [])],
        ),
        Case(
            "per endpoint: another endpoint's success hides nothing, same name elsewhere apart",
            {
                attempts("shop", "orders", "retry"): "1+1x20",
                attempts("billing", "orders", "success"): "1+1x20",
                attempts("shop", "invoices", "success"): "1+1x20",
            },
            [("20m", [failing("shop", "orders")])],
        ),
        Case(
            "no attempts at all",
            {attempts("shop", "orders", "success"): "5x20"},
            [("20m", [])],
        ),
    ]
    other_release = Case(
        "another release's delivery service (another job)",
        {attempts("shop", "orders", "retry", job=OTHER_JOB): "1+1x20"},
        [("20m", [] if scoped else [failing("shop", "orders")])],
    )
    return [*cases, other_release]


# WebhookEndpointAutoDisabled ----------------------------------------------------------------

DISABLED = "webhook_endpoints_disabled"


def gauge(name: str, pod: str = "a", job: str = JOB) -> str:
    return series(name, **scrape_labels(job, pod), namespace=RELEASE_NS)


def auto_disabled(count: int, job: str = JOB) -> dict[str, Any]:
    return expected(
        {
            "summary": f"{count} webhook endpoint(s) disabled automatically",
            "description": (
                "Retries were exhausted (or the receiver answered 410 Gone) and the delivery "
                "service disabled the endpoint; its new deliveries are held. kubectl get "
                "webhookendpoints -A shows which (HEALTH Disabled); once the receiver is "
                "fixed, re-enable it with kubectl annotate webhookendpoint NAME "
                "webhook-operator.dev/enable=$(date +%s) --overwrite."
            ),
        },
        namespace=RELEASE_NS,
        job=job,
    )


def auto_disabled_cases(scoped: bool) -> list[Case]:
    return [
        Case(
            "two endpoints disabled (seen by both replicas: max, not sum) for 5m",
            {gauge(DISABLED, "a"): "0x5 2x15", gauge(DISABLED, "b"): "0x5 2x15"},
            [("10m", []), ("11m", [auto_disabled(2)]), ("20m", [auto_disabled(2)])],
        ),
        Case(
            "disabled for less than 5m, then re-enabled",
            {gauge(DISABLED): "0x5 1x4 0x10"},
            [("9m", []), ("10m", []), ("11m", [])],
        ),
        Case("none disabled", {gauge(DISABLED): "0x20"}, [("20m", [])]),
        Case(
            "another release's delivery service (another job)",
            {gauge(DISABLED, job=OTHER_JOB): "1x20"},
            [("20m", [] if scoped else [auto_disabled(1, job=OTHER_JOB)])],
        ),
    ]


# WebhookDeliveryBacklog ---------------------------------------------------------------------

OLDEST_DUE = "webhook_queue_oldest_due_age_seconds"


def backlog(waited: str, job: str = JOB) -> dict[str, Any]:
    return expected(
        {
            "summary": "Webhook deliveries are more than 5 minutes overdue",
            "description": (
                f"The oldest due delivery ({RELEASE_NS}/{job}) has waited {waited}: the "
                "delivery service cannot keep up (too few replicas, slow receivers, or a slow "
                "store)."
            ),
        },
        namespace=RELEASE_NS,
        job=job,
    )


def backlog_cases(scoped: bool) -> list[Case]:
    return [
        Case(
            "301 s for 11m: fires after 10m",
            {gauge(OLDEST_DUE): "301x11"},
            [("9m", []), ("10m", [backlog("5m 1s")]), ("11m", [backlog("5m 1s")])],
        ),
        Case("299 s for 20m", {gauge(OLDEST_DUE): "299x20"}, [("11m", []), ("20m", [])]),
        Case(
            "301 s for 9m, then caught up",
            {gauge(OLDEST_DUE): "301x9 0x10"},
            [("9m", []), ("10m", []), ("11m", [])],
        ),
        Case(
            "one replica behind, one not: the oldest counts",
            {gauge(OLDEST_DUE, "a"): "400x12", gauge(OLDEST_DUE, "b"): "3x12"},
            [("12m", [backlog("6m 40s")])],
        ),
        Case(
            "another release's delivery service (another job)",
            {gauge(OLDEST_DUE, job=OTHER_JOB): "301x11"},
            [("11m", [] if scoped else [backlog("5m 1s", job=OTHER_JOB)])],
        ),
    ]


CASES = {
    "WebhookEndpointFailing": failing_cases,
    "WebhookEndpointAutoDisabled": auto_disabled_cases,
    "WebhookDeliveryBacklog": backlog_cases,
}


# -- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_rules_pass_promtool_check(promtool: Path, tmp_path: Path, variant: str) -> None:
    write_rule_file(tmp_path, variant)
    result = promtool_run(promtool, tmp_path, "check", "rules", RULE_FILE)
    assert result.returncode == 0, f"promtool check rules:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_alert_has_cases(variant: str) -> None:
    assert alert_names(variant) == set(CASES), "add cases here for every alert in the chart"


@pytest.mark.parametrize("alert", CASES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_alert_fires_only_past_its_threshold(
    promtool: Path, tmp_path: Path, variant: str, alert: str
) -> None:
    write_rule_file(tmp_path, variant)
    cases = CASES[alert](variant == "service-monitor")
    tests = {
        "rule_files": [RULE_FILE],
        "evaluation_interval": "1m",
        "tests": [case.promtool_test(alert) for case in cases],
    }
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
    result = promtool_run(promtool, tmp_path, "test", "rules", test_file.name)
    assert result.returncode == 0, (
        f"promtool test rules ({variant}, {alert}):\n{result.stdout}{result.stderr}"
    )
