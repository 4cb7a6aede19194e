"""What customers may ask of an endpoint: subscriptions against the catalog and the app's
offer, URLs against the app's plain-http setting, the patch a change becomes."""

from __future__ import annotations

from typing import Any

import pytest

from webhook_operator.api.v1alpha1 import WebhookAppSpec
from webhook_operator.portal import endpoint_rules
from webhook_operator.portal.wire import EndpointUpdate


def app(**portal: Any) -> WebhookAppSpec:
    return WebhookAppSpec.model_validate(
        {
            "eventTypes": [
                {"name": "invoice.paid"},
                {"name": "invoice.created"},
                {"name": "customer.deleted"},
            ],
            "portal": portal,
        }
    )


@pytest.mark.parametrize(
    ("events", "refused"),
    [
        (["invoice.paid"], False),
        (["invoice.*"], False),
        (["*"], False),
        ([], True),
        (["invoice.paid", "invoice.paid"], True),
        (["invoice.refunded"], True),
        (["Invoice.Paid"], True),
    ],
)
def test_subscriptions_must_match_the_catalog(events: list[str], refused: bool) -> None:
    assert (endpoint_rules.events_reason(events, app()) is not None) is refused


def test_an_offer_narrower_than_the_catalog_limits_wildcards() -> None:
    spec = app(eventTypes=["invoice.*"])
    assert endpoint_rules.events_reason(["invoice.paid"], spec) is None
    assert endpoint_rules.events_reason(["invoice.*"], spec) is None
    assert "customer.deleted" in (endpoint_rules.events_reason(["*"], spec) or "")
    assert endpoint_rules.events_reason(["customer.deleted"], spec) is not None


def test_plain_http_needs_the_apps_permission() -> None:
    assert endpoint_rules.url_reason("http://127.0.0.1/x", app()) is not None
    assert endpoint_rules.url_reason("http://127.0.0.1/x", app(allowInsecureHttp=True)) is None
    assert endpoint_rules.url_reason("https://hooks.example.com/x", app()) is None


@pytest.mark.parametrize("name", ["ok", "a-1", "x" * 63])
def test_dns_labels_are_names(name: str) -> None:
    assert endpoint_rules.name_reason(name) is None


@pytest.mark.parametrize("name", ["", "-a", "A", "a_b", "a.b", "x" * 64])
def test_other_strings_are_not(name: str) -> None:
    assert endpoint_rules.name_reason(name) is not None


def disabled(reason: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "ep", "labels": {"webhook-operator.dev/managed-by": "portal"}},
        "spec": {"url": "https://x", "events": ["*"], "appRef": {"name": "shop"}},
        "status": {"health": "Disabled", "disabledReason": reason},
    }


def test_resuming_an_auto_disabled_endpoint_also_enables_it() -> None:
    patch, changes = endpoint_rules.update_patch(
        disabled("RetriesExhausted"), EndpointUpdate(active=True), "alice", "tok"
    )
    assert patch["metadata"]["annotations"]["webhook-operator.dev/enable"] == "tok"
    assert patch["spec"] == {"active": True}
    assert "re-enabled" in changes


def test_resuming_a_paused_endpoint_only_resumes() -> None:
    patch, _ = endpoint_rules.update_patch(
        disabled("Paused"), EndpointUpdate(active=True), "alice", "tok"
    )
    assert "webhook-operator.dev/enable" not in patch["metadata"]["annotations"]


def test_fields_left_out_stay_and_null_description_is_removed() -> None:
    patch, _ = endpoint_rules.update_patch(
        disabled("Paused"),
        EndpointUpdate.model_validate({"description": None}),
        "alice",
        "tok",
    )
    assert patch["spec"] == {"description": None}
    assert patch["metadata"]["annotations"]["webhook-operator.dev/changed-by"] == "alice"


def test_views_mask_the_secret() -> None:
    assert endpoint_rules.mask("whsec_abcdefgh1234") == "whsec_…1234"
    view = endpoint_rules.view(disabled("Gone"))
    assert view.managed_by == "portal"
    assert view.health == "Disabled"
    assert view.disabled_reason == "Gone"
    assert endpoint_rules.auto_disabled(disabled("Gone"))
    assert not endpoint_rules.auto_disabled(disabled("Paused"))
