"""The portal's web page as a customer meets it, in headless Chromium against the real
control plane, operator, delivery service and portal: the ticket link opens a session and
leaves the address bar, the endpoints list shows health, times, who created an endpoint
and which ones are managed in Git; an expired link says so and what to do. Plus the
security headers every page carries. Screenshots of the pages go to docs/portal/."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.harness import Cluster, PortalProcess, Receiver, eventually
from tests.integration.portal_support import (
    apply_endpoint,
    backend,
    customer,
    make_app,
    request_ticket,
    ticket,
)

pytestmark = pytest.mark.integration
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "portal"
SUBJECT = "acme-corp/alice@example.com"
COOKIE = "webhook_portal_session"


def healthy(api: httpx.Client, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] = api.get(f"/endpoints/{name}").json()
    return found if found.get("health") == "Healthy" else None


def test_the_ticket_link_opens_the_endpoints_list(
    cluster: Cluster, namespace: str, portal: PortalProcess, receiver: Receiver, page: Page
) -> None:
    make_app(
        cluster,
        namespace,
        portal={"allowInsecureHttp": True, "displayName": "Acme Shop", "accentColor": "#0a7d5a"},
    )
    issuer = backend(cluster, namespace, ["shop"])
    apply_endpoint(cluster, namespace, "audit-log", "http://127.0.0.1:9/audit")
    with customer(portal, ticket(portal, issuer, namespace, "shop", subject=SUBJECT)) as api:
        created = api.post(
            "/endpoints",
            json={
                "name": "orders",
                "url": receiver.url("/hook"),
                "events": ["invoice.paid", "invoice.created"],
                "description": "Order fulfilment",
            },
        )
        assert created.status_code == 201, created.text
        assert api.post("/endpoints/orders/ping").status_code < 300
        eventually(lambda: healthy(api, "orders"), what="orders Healthy")

    link = request_ticket(portal, issuer, namespace, "shop", subject=SUBJECT).json()["portalUrl"]
    page.goto(link)
    page.wait_for_url(re.compile(r"/endpoints$"))

    assert "ticket" not in page.url
    cookie = next(c for c in page.context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["expires"] > time.time()

    expect(page.get_by_role("heading", level=1)).to_have_text("Endpoints")
    expect(page.locator(".app-name")).to_have_text("Acme Shop")
    expect(page.get_by_text(f"Signed in as {SUBJECT}")).to_be_visible()

    orders = page.locator('[data-name="orders"]')
    expect(orders.locator(".badge")).to_have_text("Healthy")
    expect(orders).to_contain_text(receiver.url("/hook"))
    expect(orders).to_contain_text("Order fulfilment")
    expect(orders).to_contain_text("invoice.paid")
    expect(orders).to_contain_text(f"Created by{SUBJECT}")
    expect(orders.locator(".gitops")).to_have_count(0)
    expect(orders).not_to_contain_text("Last successnever")

    audit = page.locator('[data-name="audit-log"]')
    expect(audit.locator(".badge")).to_have_text("Pending")
    expect(audit.locator(".gitops")).to_have_text("Managed in Git · read-only")
    expect(audit).to_contain_text("Last deliverynever")

    # The accent colour comes from the app, through /theme.css (CSP allows no inline style).
    accent = page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()"
    )
    assert accent == "#0a7d5a"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "endpoints.png", full_page=True)


def test_an_expired_link_says_so_and_what_to_do(
    cluster: Cluster, namespace: str, portal: PortalProcess, page: Page
) -> None:
    make_app(cluster, namespace)
    issuer = backend(cluster, namespace, ["shop"])
    answer = request_ticket(portal, issuer, namespace, "shop", ttl="1s")
    assert answer.status_code == 201, answer.text
    time.sleep(1.5)

    page.goto(answer.json()["portalUrl"])
    expect(page.get_by_role("heading", level=1)).to_have_text("This link has expired")
    expect(page.get_by_text("ask it for a new link")).to_be_visible()
    expect(page.get_by_label("Or paste a new link or ticket")).to_be_visible()
    assert "ticket" not in page.url
    assert not [c for c in page.context.cookies() if c["name"] == COOKIE]
    page.screenshot(path=SCREENSHOTS / "expired.png", full_page=True)


def test_the_ticket_can_be_pasted_without_the_fragment(
    cluster: Cluster, namespace: str, portal: PortalProcess, page: Page
) -> None:
    make_app(cluster, namespace)
    issuer = backend(cluster, namespace, ["shop"])
    link = request_ticket(portal, issuer, namespace, "shop").json()["portalUrl"]

    page.goto(portal.url + "/")
    page.get_by_label("Link or ticket").fill(link)
    page.get_by_role("button", name="Open").click()
    page.wait_for_url(re.compile(r"/endpoints$"))
    expect(page.get_by_text("No endpoints yet.")).to_be_visible()


def test_pages_carry_a_strict_content_security_policy(
    cluster: Cluster, namespace: str, portal: PortalProcess
) -> None:
    make_app(cluster, namespace, name="plain")
    make_app(
        cluster, namespace, name="embedded", portal={"embedOrigins": ["https://127.0.0.1:8443"]}
    )
    issuer = backend(cluster, namespace, ["plain", "embedded"])

    opening = httpx.get(portal.url + "/", timeout=10)
    assert opening.status_code == 200
    policy = opening.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert "*" not in policy
    assert opening.headers["X-Content-Type-Options"] == "nosniff"
    assert opening.headers["Referrer-Policy"] == "no-referrer"
    assert opening.headers["Cache-Control"] == "no-store"

    def endpoints_page(app: str) -> httpx.Response:
        token = ticket(portal, issuer, namespace, app)
        return httpx.get(portal.url + "/endpoints", cookies={COOKIE: token}, timeout=10)

    plain = endpoints_page("plain")
    assert plain.status_code == 200
    assert "frame-ancestors 'none'" in plain.headers["Content-Security-Policy"]
    embedded = endpoints_page("embedded")
    assert embedded.status_code == 200
    assert "frame-ancestors https://127.0.0.1:8443" in embedded.headers["Content-Security-Policy"]

    # The page a link opens holds no data and cannot know the app before the exchange:
    # any app's embedding site may frame it, and no other.
    def opening_frame_ancestors() -> str | None:
        policy = httpx.get(portal.url + "/", timeout=10).headers["Content-Security-Policy"]
        ancestors = policy.rpartition("frame-ancestors ")[2]
        return ancestors if "https://127.0.0.1:8443" in ancestors else None

    assert "'none'" not in eventually(opening_frame_ancestors, what="the embedding origin")


def test_without_a_session_the_page_asks_to_open_the_link_again(portal: PortalProcess) -> None:
    answer = httpx.get(portal.url + "/endpoints", timeout=10)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/problem?reason=NoSession"
    shown = httpx.get(portal.url + answer.headers["Location"], timeout=10)
    assert shown.headers["Content-Type"].startswith("text/html")
    assert "Open the link again" in shown.text
    assert "frame-ancestors 'none'" in shown.headers["Content-Security-Policy"]

    forged = httpx.get(
        portal.url + "/endpoints", cookies={COOKIE: "not-a-ticket"}, follow_redirects=True
    )
    assert "This link does not work" in forged.text

    # A script exchanging a ticket as JSON gets the refusal's own status.
    refused = httpx.post(portal.url + "/session", json={"ticket": "not-a-ticket"}, timeout=10)
    assert refused.status_code == 401
    assert "This link does not work" in refused.text


def test_every_change_needs_the_session_csrf_token_and_this_site(
    cluster: Cluster, namespace: str, portal: PortalProcess, receiver: Receiver
) -> None:
    """Every POST page but the session exchange, listed from the routes themselves: a
    missing or wrong CSRF token, another site, or a read ticket changes nothing."""
    from types import SimpleNamespace

    from webhook_operator.portal.web import routes
    from webhook_operator.portal.web.common import csrf_token

    make_app(cluster, namespace, portal={"allowInsecureHttp": True})
    issuer = backend(cluster, namespace, ["shop"])
    manage = ticket(portal, issuer, namespace, "shop")
    with customer(portal, manage) as api:
        made = api.post(
            "/endpoints", json={"name": "orders", "url": receiver.url("/h"), "events": ["*"]}
        )
        assert made.status_code == 201, made.text
    changes = [
        op.path.replace("{endpoint}", "orders").replace("{id}", "dlv_0000000000000000000000000")
        for op in routes.operations(SimpleNamespace(directory=None))  # type: ignore[arg-type]
        if op.method == "POST" and op.path != "/session"
    ]
    assert len(changes) >= 7, changes
    read = ticket(portal, issuer, namespace, "shop", scope="read")
    form = {
        "url": "http://127.0.0.1:9/changed",
        "events": "invoice.paid",
        "since": "2026-01-01T00:00",
    }

    def post(path: str, token: str, headers: dict[str, str], **extra: str) -> str:
        answer = httpx.post(
            portal.url + path,
            data={**form, **extra},
            cookies={COOKIE: token},
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 303, (path, answer.status_code, answer.text[:200])
        return answer.headers["Location"]

    same = {"Sec-Fetch-Site": "same-origin"}
    for path in changes:
        assert post(path, manage, same) == "/problem?reason=BadCsrfToken", path
        assert post(path, manage, same, csrf="0" * 40) == "/problem?reason=BadCsrfToken", path
        other = {"Sec-Fetch-Site": "cross-site"}
        assert post(path, manage, other, csrf=csrf_token(manage)) == (
            "/problem?reason=CrossOrigin"
        ), path
        assert post(path, read, same, csrf=csrf_token(read)) == (
            "/problem?reason=ReadOnlyTicket"
        ), path
    with customer(portal, manage) as api:
        still = api.get("/endpoints/orders").json()
    assert still["url"] == receiver.url("/h")
    assert [i["name"] for i in api_list(portal, manage)] == ["orders"]


def api_list(portal: PortalProcess, token: str) -> list[dict[str, Any]]:
    with customer(portal, token) as api:
        items: list[dict[str, Any]] = api.get("/endpoints").json()["items"]
    return items


def test_hostile_forms_get_a_page_that_says_why(
    cluster: Cluster, namespace: str, portal: PortalProcess
) -> None:
    """A form too large, a bad byte, another app's endpoint: a page with the reason, never
    a 500 and never a change."""
    from webhook_operator.portal.web.common import csrf_token

    make_app(cluster, namespace, portal={"allowInsecureHttp": True})
    make_app(cluster, namespace, name="rival", portal={"allowInsecureHttp": True})
    issuer = backend(cluster, namespace, ["shop", "rival"])
    rival = ticket(portal, issuer, namespace, "rival")
    with customer(portal, rival) as api:
        made = api.post(
            "/endpoints", json={"name": "theirs", "url": "http://127.0.0.1:9/h", "events": ["*"]}
        )
        assert made.status_code == 201, made.text
    token = ticket(portal, issuer, namespace, "shop")
    csrf = csrf_token(token)
    same = {"Sec-Fetch-Site": "same-origin"}

    def post(path: str, body: bytes) -> httpx.Response:
        return httpx.post(
            portal.url + path,
            content=body,
            cookies={COOKIE: token},
            headers={**same, "Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )

    huge = post("/endpoints/new", f"csrf={csrf}&description=".encode() + b"a" * 200_000)
    assert huge.status_code == 303, huge.text
    assert huge.headers["Location"] == "/problem?reason=BodyTooLarge"
    shown = httpx.get(portal.url + huge.headers["Location"], timeout=10)
    assert "too large" in shown.text

    bad_byte = post("/endpoints/new", f"csrf={csrf}&url=http://127.0.0.1:9/%ff&events=*".encode())
    assert bad_byte.headers.get("Location") == "/problem?reason=InvalidUTF8", bad_byte.text
    with customer(portal, token) as api:
        assert api.get("/endpoints").json()["items"] == []

    for path in ("/endpoints/theirs/edit", "/endpoints/theirs/delete", "/endpoints/theirs/ping"):
        answer = post(path, f"csrf={csrf}&url=http://127.0.0.1:9/x&events=*".encode())
        assert answer.headers.get("Location") == "/problem?reason=OutsideTicket", (
            path,
            answer.text,
        )
    with customer(portal, rival) as api:
        assert api.get("/endpoints/theirs").json()["url"] == "http://127.0.0.1:9/h"
