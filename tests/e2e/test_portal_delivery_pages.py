"""The portal's delivery pages as a customer meets them, in headless Chromium against the
real control plane, operator, delivery service and portal: an endpoint's deliveries newest
first with their statuses and HTTP statuses, filtered by status and paged by the Older
link; one delivery's attempts and its payload, downloaded byte for byte as the receiver
got it; resend and replay reaching the receiver again. A read ticket sees everything and
no control that changes anything; another app's delivery is refused."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from playwright.sync_api import Page, expect

from tests.e2e.portal_pages import arrived, emit, listed, open_portal
from tests.harness import Cluster, DeliveryProcess, PortalProcess, Producer, Receiver, eventually
from tests.integration.portal_support import (
    GROUP,
    VERSION,
    apply_endpoint,
    backend,
    make_app,
    ready,
)

pytestmark = pytest.mark.integration
SUBJECT = "acme-corp/alice@example.com"
# More than a page (50): the Older link has somewhere to go.
LATER_EVENTS = 54
# A failed delivery is retried in 30 minutes: long after each test.
RETRY = {"schedule": ["30m"]}


def health(cluster: Cluster, namespace: str, name: str) -> str | None:
    obj = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "webhookendpoints", name
    )
    found: str | None = (obj.get("status") or {}).get("health")
    return found


def rows(page: Page) -> Any:
    return page.locator("table.deliveries tbody tr")


def test_a_customer_pages_filters_opens_downloads_resends_and_replays(
    cluster: Cluster,
    namespace: str,
    portal: PortalProcess,
    delivery_service: DeliveryProcess,
    receiver: Receiver,
    page: Page,
) -> None:
    make_app(cluster, namespace)
    # Declared in Git: replay and resend are allowed on it all the same.
    apply_endpoint(cluster, namespace, "orders", receiver.url("/orders"), retry=RETRY)
    ready(cluster, namespace, "orders")
    producer = Producer(cluster, namespace, ["shop"])
    receiver.respond("/orders", (500, {}, 0.0), (204, {}, 0.0))
    [first] = emit(delivery_service, namespace, producer, "shop", ["first"])
    eventually(lambda: arrived(receiver, "/orders", first), what="the first attempt")
    later = emit(
        delivery_service, namespace, producer, "shop", [f"e{i}" for i in range(LATER_EVENTS)]
    )
    eventually(
        lambda: (
            len(listed(delivery_service, namespace, producer, "orders", "delivered"))
            == LATER_EVENTS
        ),
        what="the later events delivered",
    )
    eventually(
        lambda: listed(delivery_service, namespace, producer, "orders", "failed"),
        what="the first delivery failed",
    )
    # The badge shows the status the operator writes, at most every 10 s per endpoint.
    eventually(
        lambda: health(cluster, namespace, "orders") in ("Healthy", "Failing"),
        timeout=30,
        what="the endpoint's health in its status",
    )

    open_portal(page, portal, backend(cluster, namespace, ["shop"]), namespace)
    page.goto(f"{portal.url}/endpoints/orders/deliveries")
    expect(page.get_by_role("heading", level=1)).to_have_text("Deliveries of orders")
    expect(page.locator(".endpoint-url")).to_have_text(receiver.url("/orders"))
    expect(page.locator(".delivery-endpoint .badge")).to_have_text(re.compile("Healthy|Failing"))
    expect(page.get_by_role("link", name="Back to endpoint orders")).to_have_attribute(
        "href", "/endpoints/orders"
    )

    # The 50 newest, newest first, each with its status and the receiver's HTTP status.
    expect(rows(page)).to_have_count(50)
    newest = rows(page).first
    expect(newest).to_have_attribute("data-event-id", later[-1])
    expect(newest.locator(".delivery-status")).to_have_text("delivered")
    expect(newest.locator(".http-status")).to_have_text("204")
    shown = [rows(page).nth(i).get_attribute("data-event-id") for i in range(50)]
    assert shown == list(reversed(later))[:50]

    # Older: the rest, by the page's cursor, ending with the failed first delivery.
    page.get_by_role("link", name="Older").click()
    page.wait_for_url(re.compile(r"cursor=dlv_"))
    expect(rows(page)).to_have_count(LATER_EVENTS + 1 - 50)
    oldest = rows(page).last
    expect(oldest).to_have_attribute("data-event-id", first)
    expect(oldest.locator(".delivery-status")).to_have_text("failed")
    expect(oldest.locator(".http-status")).to_have_text("500")
    expect(page.get_by_role("link", name="Older")).to_have_count(0)

    # The filter by status keeps its choice.
    page.get_by_role("link", name="Newest").click()
    # By keyboard: a checkbox toggles with Space, the form submits with Enter.
    page.get_by_label("failed", exact=True).focus()
    page.keyboard.press("Space")
    page.get_by_role("button", name="Filter").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"status=failed"))
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_have_attribute("data-event-id", first)
    expect(page.get_by_label("failed", exact=True)).to_be_checked()
    expect(page.get_by_label("delivered", exact=True)).not_to_be_checked()

    # One delivery: its attempts and its payload, indented.
    page.get_by_role("link", name=first).click()
    page.wait_for_url(re.compile(r"/deliveries/dlv_\w+$"))
    attempts = page.locator("table.attempts tbody tr")
    expect(attempts).to_have_count(1)
    expect(attempts.first.locator(".http-status")).to_have_text("500")
    expect(page.locator(".delivery-summary .delivery-status")).to_have_text("failed")
    expect(page.locator("pre.payload")).to_contain_text('    "ref": "first"')
    expect(page.get_by_role("link", name="orders", exact=True)).to_have_attribute(
        "href", "/endpoints/orders"
    )

    # Download JSON: exactly the bytes the receiver got.
    page.goto(f"{portal.url}/endpoints/orders/deliveries")
    page.get_by_role("link", name=later[-1]).click()
    page.wait_for_url(re.compile(r"/deliveries/dlv_\w+$"))
    original = page.url.rpartition("/")[2]
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download JSON").click()
    download = download_info.value
    assert download.suggested_filename == f"{later[-1]}.json"
    [got] = arrived(receiver, "/orders", later[-1])
    assert Path(download.path()).read_bytes() == got["body"]

    # Resend: a new delivery of the same event, which reaches the receiver.
    page.get_by_role("button", name="Resend").click()
    page.wait_for_url(re.compile(rf"/deliveries/dlv_\w+\?resent={original}$"))
    copy = page.url.split("?")[0].rpartition("/")[2]
    assert copy != original
    expect(page.locator(".notice.resent")).to_have_text(f"Delivery {original} resent as {copy}.")
    expect(page.locator(".event-id")).to_have_text(later[-1])
    eventually(lambda: len(arrived(receiver, "/orders", later[-1])) == 2, what="the resend")

    # Replay: the failed first delivery again, now that the receiver answers.
    page.goto(f"{portal.url}/endpoints/orders/deliveries")
    page.get_by_role("link", name="Replay failed deliveries").click()
    page.wait_for_url(re.compile(r"/endpoints/orders/replay$"))
    expect(page.get_by_label("Since (UTC)")).to_have_value(
        re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")
    )
    page.get_by_label("Until (UTC, optional: up to now)").fill("2000-01-01T00:00")
    page.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("alert")).to_have_text("Until must be later than since")
    page.get_by_label("Until (UTC, optional: up to now)").fill("")
    # Which deliveries: failed and exhausted ticked; none ticked is said with the form;
    # expired only finds none here (nothing was held).
    failed, exhausted = page.get_by_label("Failed, waiting"), page.get_by_label("Gave up")
    expired = page.get_by_label("Expired: held")
    expect(failed).to_be_checked()
    expect(exhausted).to_be_checked()
    expect(expired).not_to_be_checked()
    failed.uncheck()
    exhausted.uncheck()
    page.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("alert")).to_have_text("Choose which deliveries to replay")
    page.get_by_label("Expired: held").check()
    page.get_by_role("button", name="Replay").click()
    expect(page.locator(".notice.replayed")).to_contain_text("0 deliveries replayed.")
    expect(page.get_by_label("Expired: held")).to_be_checked()
    page.get_by_label("Expired: held").uncheck()
    page.get_by_label("Failed, waiting").check()
    page.get_by_role("button", name="Replay").click()
    expect(page.locator(".notice.replayed")).to_contain_text("1 delivery replayed.")
    eventually(lambda: len(arrived(receiver, "/orders", first)) == 2, what="the replay")
    page.get_by_role("link", name="See the deliveries").click()
    page.wait_for_url(re.compile(r"/endpoints/orders/deliveries$"))
    expect(rows(page).first).to_have_attribute("data-event-id", first)

    # A change without the session's CSRF token is refused, and changes nothing.
    forged = page.request.post(
        f"{portal.url}/deliveries/{original}/resend", form={"csrf": "x"}, max_redirects=0
    )
    assert forged.status == 303
    assert forged.headers["location"] == "/problem?reason=BadCsrfToken"
    assert len(arrived(receiver, "/orders", later[-1])) == 2


def test_a_read_ticket_reads_and_another_apps_delivery_is_refused(
    cluster: Cluster,
    namespace: str,
    portal: PortalProcess,
    delivery_service: DeliveryProcess,
    receiver: Receiver,
    page: Page,
) -> None:
    make_app(cluster, namespace)
    make_app(cluster, namespace, name="rival")
    apply_endpoint(cluster, namespace, "orders", receiver.url("/orders"), retry=RETRY)
    apply_endpoint(cluster, namespace, "theirs", receiver.url("/theirs"), app="rival")
    ready(cluster, namespace, "orders")
    ready(cluster, namespace, "theirs")
    producer = Producer(cluster, namespace, ["shop", "rival"])
    [ours] = emit(delivery_service, namespace, producer, "shop", ["ours"])
    [theirs] = emit(delivery_service, namespace, producer, "rival", ["theirs"])
    eventually(lambda: arrived(receiver, "/orders", ours), what="our delivery")
    eventually(lambda: arrived(receiver, "/theirs", theirs), what="their delivery")
    recorded: list[dict[str, Any]] = eventually(  # type: ignore[assignment]
        lambda: listed(delivery_service, namespace, producer, "theirs", "delivered"),
        what="their delivery recorded",
    )
    their_delivery = recorded[0]["id"]

    open_portal(page, portal, backend(cluster, namespace, ["shop"]), namespace, scope="read")
    deliveries = f"{portal.url}/endpoints/orders/deliveries"
    page.goto(deliveries)
    expect(rows(page)).to_have_count(1)
    expect(page.get_by_role("link", name="Replay failed deliveries")).to_have_count(0)
    expect(page.locator(".read-only")).to_be_visible()

    # The detail and the download work; resend does not show.
    page.get_by_role("link", name=ours).click()
    page.wait_for_url(re.compile(r"/deliveries/dlv_\w+$"))
    ours_id = page.url.rpartition("/")[2]
    expect(page.get_by_role("button", name="Resend")).to_have_count(0)
    expect(page.locator(".read-only")).to_be_visible()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download JSON").click()
    [got] = arrived(receiver, "/orders", ours)
    assert Path(download_info.value.path()).read_bytes() == got["body"]

    # No replay form, and a change sent anyway is refused.
    page.goto(f"{portal.url}/endpoints/orders/replay")
    expect(page.get_by_label("Since (UTC)")).to_have_count(0)
    expect(page.locator(".read-only")).to_be_visible()
    refused = page.request.post(
        f"{portal.url}/deliveries/{ours_id}/resend", form={"csrf": "x"}, max_redirects=0
    )
    assert refused.status == 303
    assert refused.headers["location"] == "/problem?reason=ReadOnlyTicket"
    assert len(arrived(receiver, "/orders", ours)) == 1

    # A filter or a page link that is wrong is said on the page.
    page.goto(deliveries + "?status=lost")
    expect(page.get_by_role("alert")).to_contain_text("unknown status 'lost'")
    page.goto(deliveries + "?cursor=nope")
    expect(page.get_by_role("alert")).to_contain_text("That page link is not valid")

    # Another app's delivery and endpoint: refused, without naming the app.
    for path in (
        f"/deliveries/{their_delivery}",
        f"/deliveries/{their_delivery}/download",
        "/endpoints/theirs/deliveries",
        "/endpoints/theirs/replay",
    ):
        page.goto(portal.url + path)
        page.wait_for_url(re.compile(r"/problem\?reason=OutsideTicket$"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Not yours")
        expect(page.locator("main")).not_to_contain_text("rival")
