"""The portal's endpoint pages in headless Chromium against the real control plane,
operator, delivery service and portal: a customer creates an endpoint through the form
(events picked from the catalog by category), sees its signing secret once and masked
afterwards, and the receiver verifies a test ping with that very secret; a refused form
comes back with the message and what was typed; edit, rotate (two signatures during the
grace period) and delete; a read ticket and an endpoint from Git show no controls, and a
change without the form's CSRF token is refused."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.portal_pages import headers_of, open_portal, pinged, verified
from tests.harness import Cluster, PortalProcess, Receiver, eventually
from tests.integration.portal_support import (
    apply_endpoint,
    backend,
    customer,
    make_app,
    ticket,
)
from webhook_operator.portal.web.common import csrf_token

pytestmark = pytest.mark.integration
COOKIE = "webhook_portal_session"
ALLOW_HTTP = {"allowInsecureHttp": True}


def test_create_through_the_form_shows_the_secret_once_and_a_ping_verifies_with_it(
    cluster: Cluster, namespace: str, portal: PortalProcess, receiver: Receiver, page: Page
) -> None:
    make_app(cluster, namespace, portal=ALLOW_HTTP)
    issuer = backend(cluster, namespace, ["shop"])
    receiver.respond("/hook", (200, {}, 0.0))
    open_portal(page, portal, issuer, namespace)

    page.get_by_role("link", name="New endpoint").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New endpoint")
    billing = page.get_by_role("group", name="Billing")
    expect(billing).to_contain_text("An invoice was paid.")
    page.get_by_label("URL", exact=True).fill("ftp://example.com/hook")
    page.get_by_label("Description").fill("Order fulfilment")
    billing.get_by_label("invoice.paid", exact=True).check()
    page.get_by_label("Name").fill("orders")
    page.get_by_role("button", name="Create endpoint").click()

    # Refused: the message, and everything typed is still there.
    expect(page.get_by_role("alert")).to_contain_text("ftp")
    expect(page.get_by_label("Description")).to_have_value("Order fulfilment")
    expect(billing.get_by_label("invoice.paid", exact=True)).to_be_checked()
    expect(page.get_by_label("Name")).to_have_value("orders")

    page.get_by_label("URL", exact=True).fill(receiver.url("/hook"))
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Endpoint orders created")
    expect(page.get_by_text("Store this secret now.")).to_be_visible()
    secret = page.get_by_label("Signing secret of orders").input_value()
    assert secret.startswith("whsec_")
    assert secret not in page.url
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    page.get_by_role("link", name="I have stored it: open the endpoint").click()
    page.wait_for_url(re.compile(r"/endpoints/orders$"))
    expect(page.locator('[data-field="secret"]')).to_have_text(f"whsec_…{secret[-4:]}")
    assert secret not in page.content()
    expect(page.locator(".endpoint-detail")).to_contain_text("invoice.paid")
    expect(page.locator(".endpoint-detail")).to_contain_text("acme-corp/alice@example.com")

    page.get_by_role("button", name="Send test ping").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Test ping to orders")
    expect(page.locator('[data-field="status"]')).to_have_text("200")
    expect(page.get_by_role("link", name=re.compile(r"^Open delivery dlv_"))).to_be_visible()
    body = verified(secret, pinged(receiver, "/hook", 0))
    assert body["type"] == "webhook.ping"

    # The list links each endpoint's name to its page.
    page.get_by_role("link", name="Endpoints", exact=True).first.click()
    page.locator('[data-name="orders"]').get_by_role("link", name="orders").click()
    page.wait_for_url(re.compile(r"/endpoints/orders$"))


def test_edit_rotate_and_delete(
    cluster: Cluster, namespace: str, portal: PortalProcess, receiver: Receiver, page: Page
) -> None:
    make_app(cluster, namespace, portal=ALLOW_HTTP)
    issuer = backend(cluster, namespace, ["shop"])
    with customer(portal, ticket(portal, issuer, namespace, "shop")) as api:
        made = api.post(
            "/endpoints",
            json={"name": "orders", "url": receiver.url("/one"), "events": ["invoice.paid"]},
        )
        assert made.status_code == 201, made.text
    old_secret = made.json()["secret"]
    open_portal(page, portal, issuer, namespace)
    page.goto(portal.url + "/endpoints/orders")

    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("URL", exact=True)).to_have_value(receiver.url("/one"))
    page.get_by_label("URL", exact=True).fill(receiver.url("/two"))
    page.get_by_label("invoice.paid", exact=True).uncheck()
    page.get_by_role("group", name="Customers").get_by_label("customer.deleted").check()
    page.get_by_label("Other event types or wildcards").fill("invoice.*")
    page.get_by_role("button", name="Save changes").click()
    page.wait_for_url(re.compile(r"/endpoints/orders$"))
    detail = page.locator(".endpoint-detail")
    expect(detail).to_contain_text(receiver.url("/two"))
    expect(detail.locator(".events li")).to_have_text(["customer.deleted", "invoice.*"])
    expect(detail).to_contain_text("Activeyes")

    page.get_by_role("link", name="Rotate secret").click()
    expect(page.get_by_text("The old secret keeps working for 24 hours")).to_be_visible()
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New signing secret for orders")
    new_secret = page.get_by_label("Signing secret of orders").input_value()
    assert new_secret.startswith("whsec_")
    assert new_secret != old_secret

    page.get_by_role("link", name="I have stored it: open the endpoint").click()
    expect(page.locator(".endpoint-detail")).to_contain_text("Previous secret")
    page.get_by_role("button", name="Send test ping").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Test ping to orders")
    got = pinged(receiver, "/two", 0)
    signatures = headers_of(got)["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    verified(new_secret, got)
    verified(old_secret, got)

    # Paused through the toggle: the next ping is held, and the form says how to resume.
    page.get_by_role("link", name="Back to orders").click()
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Active").uncheck()
    page.get_by_role("button", name="Save changes").click()
    page.wait_for_url(re.compile(r"/endpoints/orders$"))
    expect(page.locator(".endpoint-detail")).to_contain_text("Activeno: paused")
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Active")).not_to_be_checked()
    expect(page.locator("#active-note")).to_contain_text("turning Active on resumes")
    page.get_by_role("link", name="Cancel").click()
    page.get_by_role("button", name="Send test ping").click()
    expect(page.locator("[data-result]")).to_have_attribute("data-result", "held")

    page.get_by_role("link", name="Back to orders").click()
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_text("pending deliveries are cancelled")).to_be_visible()
    page.get_by_role("button", name="Delete endpoint").click()
    page.wait_for_url(re.compile(r"/endpoints$"))
    expect(page.locator('[data-name="orders"]')).to_have_count(0)


def test_read_tickets_and_git_endpoints_show_no_controls_and_forged_changes_are_refused(
    cluster: Cluster, namespace: str, portal: PortalProcess, receiver: Receiver, page: Page
) -> None:
    make_app(cluster, namespace, portal=ALLOW_HTTP)
    issuer = backend(cluster, namespace, ["shop"])
    apply_endpoint(cluster, namespace, "audit-log", receiver.url("/audit"))
    manage = ticket(portal, issuer, namespace, "shop")
    with customer(portal, manage) as api:
        made = api.post(
            "/endpoints",
            json={"name": "orders", "url": receiver.url("/hook"), "events": ["invoice.paid"]},
        )
        assert made.status_code == 201, made.text
        eventually(
            lambda: api.get("/endpoints/audit-log").status_code == 200 or None,
            what="the Git endpoint seen by the portal",
        )
    changes = ("Edit", "Rotate secret", "Delete", "Replay")

    open_portal(page, portal, issuer, namespace, scope="read")
    expect(page.get_by_text("read only")).to_be_visible()
    expect(page.get_by_role("link", name="New endpoint")).to_have_count(0)
    page.goto(portal.url + "/endpoints/orders")
    for name in changes:
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Send test ping")).to_have_count(0)
    expect(page.get_by_role("link", name="Deliveries")).to_be_visible()
    page.get_by_role("link", name="How to verify").click()
    expect(page.get_by_text("webhook-timestamp").first).to_be_visible()
    expect(page.locator("pre").first).to_contain_text("whsec_YOUR_SIGNING_SECRET")
    # Without a manage ticket the form page itself is refused.
    page.goto(portal.url + "/endpoints/new")
    expect(page.locator("[data-reason]")).to_have_attribute("data-reason", "ReadOnlyTicket")

    # A manage ticket sees no controls on an endpoint from Git either.
    open_portal(page, portal, issuer, namespace)
    page.goto(portal.url + "/endpoints/audit-log")
    expect(page.get_by_text("Managed in Git · read-only")).to_be_visible()
    for name in changes:
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Send test ping")).to_have_count(0)

    # A forged form: the session's cookie but not its CSRF token.
    forged = httpx.post(
        portal.url + "/endpoints/orders/delete",
        data={"csrf": "guessed"},
        cookies={COOKIE: manage},
        timeout=10,
    )
    assert forged.status_code == 303
    assert forged.headers["Location"] == "/problem?reason=BadCsrfToken"
    with customer(portal, manage) as api:
        assert api.get("/endpoints/orders").status_code == 200


def test_plain_http_is_refused_in_the_form_where_the_app_does_not_allow_it(
    cluster: Cluster, namespace: str, portal: PortalProcess
) -> None:
    make_app(cluster, namespace)
    issuer = backend(cluster, namespace, ["shop"])
    token = ticket(portal, issuer, namespace, "shop")
    answer = httpx.post(
        portal.url + "/endpoints/new",
        data={
            "csrf": csrf_token(token),
            "url": "http://127.0.0.1:9/hook",
            "events": "invoice.paid",
            "description": "kept",
            "active": "on",
        },
        cookies={COOKIE: token},
        timeout=10,
    )
    assert answer.status_code == 200
    assert "plain http:// is not allowed for this app; use https://" in answer.text
    assert 'value="http://127.0.0.1:9/hook"' in answer.text
    assert 'value="kept"' in answer.text
