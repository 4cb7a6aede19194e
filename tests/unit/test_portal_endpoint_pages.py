"""The endpoint pages' pure parts: reading the endpoint form (checked types, wildcards typed
by hand, the active toggle), the requests it becomes (a disabled endpoint's toggle is sent
only when moved, so saving another change does not pause it), refusals as sentences, the
catalog grouped for the picker, and the grace period in words."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from multidict import MultiDict, MultiDictProxy
from pydantic import ValidationError

from webhook_operator.api.v1alpha1 import PortalSettings, WebhookAppSpec
from webhook_operator.portal.overview import catalog
from webhook_operator.portal.web.common import badge, templates, when
from webhook_operator.portal.web.endpoint_pages import (
    SECRET_PLACEHOLDER,
    SNIPPETS,
    EndpointForm,
    create_request,
    event_groups,
    grace_period,
    grace_words,
    read_form,
    shown_active,
    typed_by_hand,
    update_request,
    validation_message,
)

SPEC = WebhookAppSpec.model_validate(
    {
        "eventTypes": [
            {"name": "invoice.paid", "category": "Billing", "description": "Paid."},
            {"name": "invoice.created", "category": "Billing"},
            {"name": "customer.deleted", "category": "Customers"},
            {"name": "internal.audit", "category": "Internal"},
            {"name": "webhook.misc"},
        ]
    }
)


def form(*pairs: tuple[str, str]) -> MultiDictProxy[str]:
    return MultiDictProxy(MultiDict(pairs))


def test_the_form_reads_checked_and_typed_events_once_each() -> None:
    values = read_form(
        form(
            ("url", " https://example.com/hook "),
            ("events", "invoice.paid"),
            ("events", "customer.deleted"),
            ("more", "invoice.*,  customer.deleted\ninvoice.paid"),
            ("active", "on"),
            ("name", ""),
        )
    )
    assert values == EndpointForm(
        url="https://example.com/hook",
        events=("invoice.paid", "customer.deleted", "invoice.*"),
        active=True,
    )
    # An unchecked checkbox is not sent at all.
    assert read_form(form(("url", "https://x.example"))).active is False


def test_a_new_endpoint_leaves_empty_optional_fields_out() -> None:
    asked = create_request(EndpointForm(url="https://x.example", events=("invoice.paid",)))
    assert asked.name is None
    assert asked.description is None
    assert asked.active is True


def test_the_active_toggle_is_sent_only_when_moved() -> None:
    values = EndpointForm(url="https://x.example", events=("invoice.*",), active=False)
    # Shown off (disabled): left off, so `active` is not sent and nothing is paused.
    kept = update_request(values, shown_active=False)
    assert "active" not in kept.model_fields_set
    assert kept.description is None
    assert "description" in kept.model_fields_set
    # Shown on and turned off: pauses.
    assert update_request(values, shown_active=True).active is False
    # Shown off and turned on: resumes, and re-enables.
    assert update_request(EndpointForm(active=True, url="https://x.example"), False).active


def endpoint(active: bool, health: str, reason: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"health": health}
    if reason:
        status["disabledReason"] = reason
    return {"metadata": {"name": "e"}, "spec": {"active": active}, "status": status}


def test_the_toggle_shows_off_for_a_paused_or_disabled_endpoint() -> None:
    assert shown_active(endpoint(True, "Healthy")) is True
    assert shown_active(endpoint(False, "Disabled", "Paused")) is False
    assert shown_active(endpoint(True, "Disabled", "RetriesExhausted")) is False


def test_a_refused_field_is_named_as_the_form_labels_it() -> None:
    with pytest.raises(ValidationError) as refused:
        create_request(EndpointForm(url="", events=("invoice.paid",)))
    assert validation_message(refused.value).startswith("URL: ")


def test_the_picker_groups_subscribable_types_by_category() -> None:
    offered = catalog(
        "shop", SPEC, PortalSettings(eventTypes=["invoice.*", "customer.*", "webhook.*"])
    )
    groups = event_groups(offered)
    assert [(g.category, [t.name for t in g.types]) for g in groups] == [
        ("Billing", ["invoice.paid", "invoice.created"]),
        ("Customers", ["customer.deleted"]),
        ("Other", ["webhook.misc"]),
    ]
    assert typed_by_hand(["invoice.paid", "invoice.*", "x.y"], groups) == "invoice.*, x.y"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (None, "24 hours"),
        ("48h", "48 hours"),
        ("90m", "90 minutes"),
        ("1h30m", "90 minutes"),
        ("45s", "45 seconds"),
        ("0s", ""),
        ("nonsense", "24 hours"),
    ],
)
def test_the_grace_period_in_words(raw: str | None, words: str) -> None:
    assert grace_words(raw) == words


def test_the_grace_period_comes_from_the_endpoint() -> None:
    assert grace_period({"spec": {"secretRotation": {"gracePeriod": "1h"}}}) == "1h"
    assert grace_period({"spec": {}}) is None


def test_the_snippets_use_a_placeholder_and_the_three_headers() -> None:
    for snippet in SNIPPETS:
        assert SECRET_PLACEHOLDER in snippet.code
    python, javascript, go = SNIPPETS
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert header in python.code
        assert header in javascript.code
    assert "github.com/standard-webhooks/standard-webhooks/libraries/go" in go.code


def form_html(**values: Any) -> str:
    tenant = SimpleNamespace(subject="acme/alice", portal=PortalSettings())
    return templates.get_template("endpoint_form.html").render(
        tenant=tenant,
        csrf="token",
        writes=True,
        title="shop",
        logo_url=None,
        when=when,
        badge=badge,
        active="endpoints",
        error=None,
        groups=event_groups(catalog("shop", SPEC, PortalSettings())),
        chosen={"invoice.paid"},
        more="invoice.*",
        **values,
    )


def test_the_form_says_that_turning_active_on_re_enables_a_disabled_endpoint() -> None:
    values = EndpointForm(url="https://x.example", events=("invoice.paid", "invoice.*"))
    html = form_html(
        values=replace(values, active=False),
        editing="orders",
        disabled=("Disabled", "retries exhausted"),
        shown=False,
    )
    assert "Disabled (retries exhausted): turning Active on also re-enables it" in html
    assert 'aria-describedby="active-note"' in html
    assert 'name="csrf" value="token"' in html
    assert 'value="invoice.*"' in html
    assert 'name="shown_active" value="off"' in html
    assert "plain http" not in html
    # A new endpoint's form has no note, and a name field.
    fresh = form_html(values=EndpointForm(), editing=None, disabled=None, shown=None)
    assert "active-note" not in fresh
    assert 'id="name"' in fresh
