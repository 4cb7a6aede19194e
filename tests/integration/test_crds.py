"""The CRDs as a user meets them through kubectl: accepted, rejected with a readable
reason, listed with useful columns, explained."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.harness import Cluster

APP = """
apiVersion: webhook-operator.dev/v1alpha1
kind: WebhookApp
metadata:
  name: billing
spec:
  description: Billing events
  eventTypes:
    - name: invoice.paid
      category: Billing
      description: An invoice was paid in full.
      schema:
        type: object
        required: [invoiceId]
        properties:
          invoiceId: {type: string}
    - name: invoice.created
      category: Billing
"""

ENDPOINT = """
apiVersion: webhook-operator.dev/v1alpha1
kind: WebhookEndpoint
metadata:
  name: {name}
spec:
{spec}
"""

VALID_SPEC = """\
appRef: {name: billing}
url: https://example.com/hooks
events: [invoice.paid, "invoice.*"]"""


def endpoint(spec: str, name: str = "ep") -> str:
    return ENDPOINT.format(name=name, spec=textwrap.indent(spec.strip(), "  "))


def apply(cluster: Cluster, namespace: str, manifest: str, check: bool = True):  # type: ignore[no-untyped-def]
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest, check=check)


def rejected(cluster: Cluster, namespace: str, spec: str) -> str:
    result = apply(cluster, namespace, endpoint(spec), check=False)
    assert result.returncode != 0, f"accepted although invalid:\n{spec}"
    return result.stderr


def test_valid_app_and_endpoint_are_accepted_with_defaults(
    cluster: Cluster, namespace: str
) -> None:
    apply(cluster, namespace, APP)
    apply(cluster, namespace, endpoint(VALID_SPEC))
    got = json.loads(
        cluster.kubectl("get", "-n", namespace, "webhookendpoint", "ep", "-o", "json").stdout
    )
    # Defaults from the models are applied by the apiserver, so users see them.
    assert got["spec"]["active"] is True
    assert got["spec"]["allowInsecureHttp"] is False


def test_kubectl_get_webhooks_lists_both_kinds(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, APP)
    apply(cluster, namespace, endpoint(VALID_SPEC))
    out = cluster.kubectl("get", "webhooks", "-n", namespace).stdout
    assert "webhookapp.webhook-operator.dev/billing" in out
    assert "webhookendpoint.webhook-operator.dev/ep" in out


def test_endpoint_columns(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, endpoint(VALID_SPEC))
    out = cluster.kubectl("get", "webhookendpoints", "-n", namespace).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == [
        "NAME",
        "APP",
        "URL",
        "EVENTS",
        "HEALTH",
        "LAST",
        "DELIVERY",
        "LAST",
        "SUCCESS",
        "AGE",
    ]
    assert "billing" in row
    assert "https://example.com/hooks" in row
    assert "invoice.paid" in row


def test_app_columns(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, APP)
    header = cluster.kubectl("get", "webhookapps", "-n", namespace).stdout.splitlines()[0]
    assert header.split() == [
        "NAME",
        "ENDPOINTS",
        "HEALTHY",
        "FAILING",
        "LAST",
        "DELIVERY",
        "READY",
        "AGE",
    ]


def test_short_names(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, APP)
    assert "billing" in cluster.kubectl("get", "wha", "-n", namespace).stdout


def test_status_columns_show_what_status_says(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, endpoint(VALID_SPEC))
    status = {"status": {"health": "Healthy", "lastDeliveryTime": "2026-01-01T00:00:00Z"}}
    cluster.kubectl(
        "patch",
        "webhookendpoint",
        "ep",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    row = cluster.kubectl("get", "webhookendpoints", "-n", namespace).stdout.splitlines()[1]
    assert "Healthy" in row


def test_explain_prints_field_descriptions(cluster: Cluster) -> None:
    out = cluster.kubectl("explain", "webhookendpoint.spec.url").stdout
    assert "Where deliveries are POSTed" in out
    out = cluster.kubectl("explain", "webhookapp.spec.eventTypes").stdout
    assert "event catalog" in out


def test_plain_http_url_is_rejected(cluster: Cluster, namespace: str) -> None:
    err = rejected(cluster, namespace, VALID_SPEC.replace("https://", "http://"))
    assert "url must use https://" in err


def test_plain_http_url_is_accepted_when_allowed(cluster: Cluster, namespace: str) -> None:
    spec = VALID_SPEC.replace("https://", "http://") + "\nallowInsecureHttp: true"
    apply(cluster, namespace, endpoint(spec))


def test_url_with_credentials_is_rejected(cluster: Cluster, namespace: str) -> None:
    err = rejected(cluster, namespace, VALID_SPEC.replace("https://", "https://user:pw@"))
    assert "url must be an absolute http(s) URL" in err


def test_empty_events_are_rejected(cluster: Cluster, namespace: str) -> None:
    err = rejected(cluster, namespace, VALID_SPEC.replace('[invoice.paid, "invoice.*"]', "[]"))
    assert "events must name at least one event type" in err


def test_malformed_event_filter_is_rejected(cluster: Cluster, namespace: str) -> None:
    err = rejected(cluster, namespace, VALID_SPEC.replace("invoice.paid", "Invoice Paid"))
    assert "each event must be a type such as invoice.paid" in err


@pytest.mark.parametrize("delay", ["-1m", "0s", "soon"])
def test_bad_retry_delay_is_rejected(cluster: Cluster, namespace: str, delay: str) -> None:
    err = rejected(cluster, namespace, VALID_SPEC + f'\nretry: {{schedule: [1m, "{delay}"]}}')
    assert "each retry delay must be a positive duration" in err


def test_retry_schedule_is_accepted(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, endpoint(VALID_SPEC + "\nretry: {schedule: [10s, 1m, 1h30m]}"))


def test_missing_app_ref_is_rejected(cluster: Cluster, namespace: str) -> None:
    err = rejected(cluster, namespace, VALID_SPEC.replace("appRef: {name: billing}", ""))
    assert "spec.appRef: Required value" in err


def test_unknown_field_is_rejected(cluster: Cluster, namespace: str) -> None:
    err = rejected(cluster, namespace, VALID_SPEC + "\ncolour: blue")
    assert 'unknown field "spec.colour"' in err


def test_timeout_over_a_minute_is_rejected(cluster: Cluster, namespace: str) -> None:
    err = rejected(cluster, namespace, VALID_SPEC + "\ntimeout: 2m")
    assert "timeout must be at most 60s" in err


@pytest.mark.parametrize("hold_for", ["-1h", "forever", "3d", "00"])
def test_bad_hold_for_is_rejected(cluster: Cluster, namespace: str, hold_for: str) -> None:
    err = rejected(cluster, namespace, VALID_SPEC + f'\nholdFor: "{hold_for}"')
    assert "holdFor must be a duration such as 72h or 30m, or 0 to hold forever" in err


def test_hold_for_accepts_durations_and_zero_for_ever(cluster: Cluster, namespace: str) -> None:
    for n, hold_for in enumerate(["2s", "72h", "0", "0s"]):
        spec = VALID_SPEC + f'\nholdFor: "{hold_for}"'
        apply(cluster, namespace, endpoint(spec, name=f"hold-{n}"))
    defaults = APP.replace("spec:\n", 'spec:\n  endpointDefaults: {holdFor: "0"}\n', 1)
    apply(cluster, namespace, defaults)
    bad = APP.replace("spec:\n", "spec:\n  endpointDefaults: {holdFor: soon}\n", 1)
    result = apply(cluster, namespace, bad, check=False)
    assert "holdFor must be a duration such as 72h or 30m, or 0 to hold forever" in result.stderr


def test_signature_headers_cannot_be_overridden(cluster: Cluster, namespace: str) -> None:
    err = rejected(cluster, namespace, VALID_SPEC + '\nheaders: {"Webhook-Signature": "x"}')
    assert "headers must not set the webhook-* signature headers" in err


HEADER_FROM = '\nheadersFrom: [{{name: "{name}", secretKeyRef: {{name: auth, key: token}}}}]'


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Webhook-Signature", "headersFrom must not set the webhook-* signature headers"),
        ("X Api Key", "header names may contain only letters, digits and '-'"),
        (
            "Host",
            "headersFrom must not set Host, Content-Length, Content-Type, Connection,"
            " Transfer-Encoding or User-Agent",
        ),
    ],
)
def test_headers_from_names_follow_the_header_rules(
    cluster: Cluster, namespace: str, name: str, message: str
) -> None:
    err = rejected(cluster, namespace, VALID_SPEC + HEADER_FROM.format(name=name))
    assert message in err


def test_headers_from_names_are_unique(cluster: Cluster, namespace: str) -> None:
    spec = VALID_SPEC + textwrap.dedent(
        """
        headersFrom:
          - {name: X-Api-Key, secretKeyRef: {name: a, key: k}}
          - {name: x-api-key, secretKeyRef: {name: b, key: k}}"""
    )
    assert "headersFrom must not name the same header twice" in rejected(cluster, namespace, spec)


def test_a_header_is_set_in_headers_or_headers_from_not_both(
    cluster: Cluster, namespace: str
) -> None:
    spec = VALID_SPEC + '\nheaders: {"x-api-key": "a"}' + HEADER_FROM.format(name="X-Api-Key")
    err = rejected(cluster, namespace, spec)
    assert "a header must not be set both in headers and in headersFrom" in err


def test_tls_needs_an_https_url(cluster: Cluster, namespace: str) -> None:
    spec = (
        "appRef: {name: billing}\nurl: http://receiver.local/hooks\nallowInsecureHttp: true\n"
        "events: [invoice.paid]\ntls: {caSecretRef: {name: ca}}"
    )
    assert "tls applies only to an https:// url" in rejected(cluster, namespace, spec)


def test_headers_from_and_tls_are_accepted(cluster: Cluster, namespace: str) -> None:
    spec = (
        VALID_SPEC
        + HEADER_FROM.format(name="Authorization")
        + "\ntls: {caSecretRef: {name: ca}, clientCertSecretRef: {name: client-tls}}"
    )
    apply(cluster, namespace, endpoint(spec))
    got = json.loads(cluster.kubectl("get", "whe", "ep", "-n", namespace, "-o", "json").stdout)[
        "spec"
    ]
    assert got["tls"]["caSecretRef"] == {"name": "ca", "key": "ca.crt"}  # the default key


def test_negative_grace_period_is_rejected(cluster: Cluster, namespace: str) -> None:
    err = rejected(cluster, namespace, VALID_SPEC + "\nsecretRotation: {gracePeriod: -1h}")
    assert "gracePeriod must be a duration" in err


def test_catalog_rejects_bad_and_duplicate_names(cluster: Cluster, namespace: str) -> None:
    bad = APP.replace("name: invoice.created", "name: Invoice Created")
    result = apply(cluster, namespace, bad, check=False)
    assert "event type names are dot-separated lowercase words" in result.stderr
    dup = APP.replace("name: invoice.created", "name: invoice.paid")
    result = apply(cluster, namespace, dup, check=False)
    assert result.returncode != 0
    assert "Duplicate value" in result.stderr


def test_status_is_a_subresource(cluster: Cluster, namespace: str) -> None:
    """A spec write cannot change status, so users' GitOps tools never clobber it."""
    apply(cluster, namespace, endpoint(VALID_SPEC))
    cluster.kubectl(
        "patch",
        "webhookendpoint",
        "ep",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"status": {"health": "Healthy"}}),
    )
    got = json.loads(
        cluster.kubectl("get", "webhookendpoint", "ep", "-n", namespace, "-o", "json").stdout
    )
    assert "status" not in got or got["status"].get("health") != "Healthy"


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("operationalFailingAfter: 0", "spec.operationalFailingAfter: Invalid value: 0"),
        ("operationalFailingAfter: 1001", "spec.operationalFailingAfter: Invalid value: 1001"),
        ('operationalEndpointRef: {name: ""}', "spec.operationalEndpointRef.name"),
    ],
)
def test_bad_operational_settings_are_rejected(
    cluster: Cluster, namespace: str, field: str, message: str
) -> None:
    bad = APP.replace("spec:\n", f"spec:\n  {field}\n", 1)
    result = apply(cluster, namespace, bad, check=False)
    assert result.returncode != 0, field
    assert message in result.stderr
