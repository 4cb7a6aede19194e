"""The customer's whole journey through the portal page, in headless Chromium against the
real control plane, operator, delivery service, portal and a receiver on 127.0.0.1, as
issue 14 walks it: open the ticket link; create an endpoint and read its secret once; a
test ping verifies with that secret (the public Standard Webhooks library); Healthy. The
receiver fails: Failing with its error, then Disabled once the (compressed) retries are
exhausted; events meanwhile are held. Re-enable: the held event arrives. Replay the
exhausted one; download a payload and compare it with what the receiver got; rotate and
see two signatures; delete. The main pages are saved as screenshots in docs/portal/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.portal_pages import (
    SUBJECT,
    arrived,
    emit,
    headers_of,
    open_portal,
    pinged,
    unlabelled,
    verified,
)
from tests.harness import Cluster, DeliveryProcess, PortalProcess, Producer, Receiver, eventually
from tests.integration.portal_support import backend, make_app

pytestmark = pytest.mark.integration
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "portal"
# Compressed: one retry after 8 s, so Failing lasts long enough to be seen, then Disabled.
RETRY = '{"spec": {"retry": {"schedule": ["8s"]}}}'


def shot(page: Page, name: str) -> None:
    """Save the page for the docs, once every control on it has a label."""
    assert not unlabelled(page), unlabelled(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def badge_becomes(page: Page, name: str, text: str, seconds: float = 60) -> None:
    """Reload the endpoints list until `name`'s badge reads `text` (the operator writes
    the status from the delivery service's results at most every few seconds)."""
    badge = page.locator(f'[data-name="{name}"] .badge')
    for _ in range(int(seconds)):
        page.goto(page.url.split("#")[0])
        if badge.inner_text().strip() == text:
            return
        page.wait_for_timeout(1000)
    expect(badge).to_have_text(text)


def test_a_customer_walks_the_whole_portal(
    cluster: Cluster,
    namespace: str,
    portal: PortalProcess,
    delivery_service: DeliveryProcess,
    receiver: Receiver,
    page: Page,
) -> None:
    make_app(
        cluster,
        namespace,
        portal={"allowInsecureHttp": True, "displayName": "Acme Shop", "accentColor": "#0a7d5a"},
    )
    issuer = backend(cluster, namespace, ["shop"])
    producer = Producer(cluster, namespace, ["shop"], name="shop-backend")
    hook = receiver.url("/hook")

    # Open the link: the ticket leaves the address bar, the session is a cookie.
    open_portal(page, portal, issuer, namespace)
    assert "ticket" not in page.url
    expect(page.get_by_text("No endpoints yet.")).to_be_visible()

    # Create, with events from the catalog by category; the secret is shown once.
    page.get_by_role("link", name="New endpoint").click()
    page.get_by_label("URL", exact=True).fill(hook)
    page.get_by_label("Description").fill("Order fulfilment")
    page.get_by_role("group", name="Billing").get_by_label("invoice.paid", exact=True).check()
    page.get_by_label("Name").fill("orders")
    shot(page, "new-endpoint")
    page.get_by_role("button", name="Create endpoint").click()
    expect(page.get_by_text("Store this secret now.")).to_be_visible()
    secret = page.get_by_label("Signing secret of orders").input_value()
    assert secret.startswith("whsec_")
    shot(page, "secret-once")
    page.get_by_role("link", name="I have stored it: open the endpoint").click()
    expect(page.locator('[data-field="secret"]')).to_have_text(f"whsec_…{secret[-4:]}")

    # A test ping: its result on the page, its signature verified with the secret.
    page.get_by_role("button", name="Send test ping").click()
    expect(page.locator('[data-field="status"]')).to_have_text("204")
    ping = verified(secret, pinged(receiver, "/hook", 0))
    assert ping["type"] == "webhook.ping"
    page.goto(portal.url + "/endpoints")
    badge_becomes(page, "orders", "Healthy")

    # The receiver breaks: Failing with its error, then Disabled after the last retry.
    cluster.kubectl(
        "patch", "webhookendpoint", "orders", "-n", namespace, "--type=merge", "-p", RETRY
    )
    receiver.respond("/hook", (500, {}, 0.0))
    [lost] = emit(delivery_service, namespace, producer, "shop", ["lost"])
    eventually(lambda: arrived(receiver, "/hook", lost), what="the first failed attempt")
    badge_becomes(page, "orders", "Failing")
    expect(page.locator('[data-name="orders"]')).to_contain_text("500")
    badge_becomes(page, "orders", "Disabled: retries exhausted")
    shot(page, "endpoints-disabled")

    # Meanwhile an event is held, not lost.
    [held] = emit(delivery_service, namespace, producer, "shop", ["held"])

    # Fixed and re-enabled: the held event arrives.
    receiver.respond("/hook", (204, {}, 0.0))
    page.locator('[data-name="orders"]').get_by_role("link", name="orders").click()
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Active")).not_to_be_checked()
    page.get_by_label("Active").check()
    page.get_by_role("button", name="Save changes").click()
    page.wait_for_url(re.compile(r"/endpoints/orders$"))
    eventually(lambda: arrived(receiver, "/hook", held), what="the held event after enabling")

    # Replay the exhausted delivery: it arrives again, now answered 204.
    page.get_by_role("link", name="Replay").first.click()
    page.get_by_role("button", name="Replay").click()
    expect(page.get_by_text(re.compile(r"\b1 delivery replayed"))).to_be_visible()
    eventually(lambda: len(arrived(receiver, "/hook", lost)) >= 3, what="the replayed event")

    # The log: open the delivered held event and download its payload.
    page.goto(portal.url + "/endpoints/orders/deliveries")
    expect(page.locator("table.deliveries tbody tr").first).to_be_visible()
    shot(page, "deliveries")
    page.locator(f'tr[data-event-id="{held}"]').get_by_role("link").first.click()
    expect(page.get_by_text("invoice.paid").first).to_be_visible()
    shot(page, "delivery")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download JSON").click()
    saved = Path(download.value.path()).read_bytes()
    assert saved == arrived(receiver, "/hook", held)[0]["body"]
    assert json.loads(saved)["data"] == {"ref": "held", "items": [1, 2]}

    # Rotate: the next ping carries two signatures, one per secret.
    page.goto(portal.url + "/endpoints/orders")
    shot(page, "endpoint")
    page.get_by_role("link", name="Rotate secret").click()
    expect(page.get_by_text("The old secret keeps working for 24 hours")).to_be_visible()
    page.get_by_role("button", name="Rotate secret").click()
    rotated = page.get_by_label("Signing secret of orders").input_value()
    assert rotated != secret
    before = len(receiver.received("/hook"))
    page.get_by_role("link", name="I have stored it: open the endpoint").click()
    page.get_by_role("button", name="Send test ping").click()
    expect(page.locator('[data-field="status"]')).to_have_text("204")
    second = pinged(receiver, "/hook", before)
    assert len(headers_of(second)["webhook-signature"].split(" ")) == 2
    verified(rotated, second)
    verified(secret, second)

    # The overview and the catalog, for the docs.
    page.get_by_role("link", name="Overview", exact=True).click()
    expect(page.get_by_role("img")).to_be_visible()
    shot(page, "overview")
    page.get_by_role("link", name="Event catalog", exact=True).click()
    shot(page, "catalog")

    # Delete: gone from the list.
    page.goto(portal.url + "/endpoints/orders")
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_text("pending deliveries are cancelled")).to_be_visible()
    page.get_by_role("button", name="Delete endpoint").click()
    page.wait_for_url(re.compile(r"/endpoints$"))
    expect(page.locator('[data-name="orders"]')).to_have_count(0)
    expect(page.get_by_text(f"Signed in as {SUBJECT}")).to_be_visible()
