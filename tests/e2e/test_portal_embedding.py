"""The portal page inside another site's page: refused for a site the app does not name in
`spec.portal.embedOrigins`, working for one it does.

Both sites have made-up https names answered through Playwright's routing, so no
connection leaves the machine: the embedding site's page is written by the test, and
https://portal.example.test is passed on to the real portal on 127.0.0.1 (a page of a
public name may not frame a loopback address directly: Chromium's Local Network Access
checks refuse it, as they would in production)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from playwright.sync_api import Browser, Frame, Page, Route, expect
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.browser import watched_page
from tests.harness import Cluster, PortalProcess
from tests.integration.portal_support import backend, make_app, request_ticket

pytestmark = pytest.mark.integration
SHOP = "https://shop.example.test"
OTHER = "https://elsewhere.example.test"
T = TypeVar("T")


PORTAL = "https://portal.example.test"


def portal_behind_a_name(page: Page, portal: PortalProcess) -> None:
    def forward(route: Route) -> None:
        request = route.request
        url = portal.url + request.url.removeprefix(PORTAL)
        headers = request.all_headers()
        if request.is_navigation_request():
            # Chromium adds Fetch metadata after interception; put back the one the portal
            # reads to know that a session opens in a frame.
            headers["sec-fetch-dest"] = "iframe" if request.frame.parent_frame else "document"
        # Redirects are followed here: Chromium does not route a frame's redirect target.
        route.fulfill(response=route.fetch(url=url, headers=headers))

    page.route(f"{PORTAL}/**", forward)


def embedding_site(page: Page, origin: str, portal_url: str) -> None:
    """`origin`/ answers with a page that frames `portal_url`."""
    html = (
        "<!doctype html><title>Shop</title><h1>Shop settings</h1>"
        f'<iframe id="portal" title="Webhooks" src="{portal_url}" width="1000" height="600">'
        "</iframe>"
    )

    def answer(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html", body=html)

    page.route(f"{origin}/**", answer)


@pytest.fixture
def tab(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A page whose console is collected, not failed on: a refused frame is reported there."""
    with watched_page(browser) as (page, problems):
        yield page, problems.errors


def until(page: Page, check: Callable[[], T | None], what: str, seconds: float = 20) -> T:
    """Poll `check`, letting the browser's events in between (time.sleep would not)."""
    for _ in range(int(seconds * 5)):
        found = check()
        if found:
            return found
        page.wait_for_timeout(200)
    frames = [(f.url, content(f)[-300:]) for f in page.frames]
    raise AssertionError(f"not within {seconds}s: {what}; frames: {frames}")


def content(frame: Frame) -> str:
    try:
        return frame.content()
    except PlaywrightError:  # navigating
        return ""


def portal_frame(page: Page) -> Frame | None:
    return next((f for f in page.frames if f.url.startswith(PORTAL)), None)


def test_a_site_the_app_does_not_name_cannot_frame_the_portal(
    cluster: Cluster, namespace: str, portal: PortalProcess, tab: tuple[Page, list[str]]
) -> None:
    page, console = tab
    make_app(cluster, namespace, portal={"embedOrigins": [SHOP]})
    issuer = backend(cluster, namespace, ["shop"])
    link = request_ticket(portal, issuer, namespace, "shop").json()["portalUrl"]

    portal_behind_a_name(page, portal)
    embedding_site(page, OTHER, link.replace(portal.url, PORTAL))
    page.goto(OTHER + "/settings", wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name="Shop settings")).to_be_visible()
    until(
        page,
        lambda: [e for e in console if "frame-ancestors" in e],
        what="the browser refusing the frame",
    )
    frame = portal_frame(page)
    assert frame is None or "Opening your webhooks" not in content(frame)
    # The endpoints page itself is refused too, whatever the opening page allows.
    page.unroute(f"{OTHER}/**")
    console.clear()
    embedding_site(page, OTHER, PORTAL + "/endpoints")
    page.goto(OTHER + "/again", wait_until="domcontentloaded")
    until(
        page,
        lambda: [e for e in console if "frame-ancestors" in e],
        what="the browser refusing the endpoints page in a frame",
    )


def test_a_site_the_app_names_frames_the_portal_with_a_session_of_its_own(
    cluster: Cluster, namespace: str, portal: PortalProcess, tab: tuple[Page, list[str]]
) -> None:
    page, console = tab
    make_app(cluster, namespace, portal={"embedOrigins": [SHOP], "displayName": "Acme Shop"})
    issuer = backend(cluster, namespace, ["shop"])
    link = request_ticket(portal, issuer, namespace, "shop").json()["portalUrl"]

    portal_behind_a_name(page, portal)
    embedding_site(page, SHOP, link.replace(portal.url, PORTAL))
    page.goto(SHOP + "/settings")

    def endpoints_frame() -> Frame | None:
        frame = portal_frame(page)
        return frame if frame is not None and "<h1>Endpoints</h1>" in content(frame) else None

    frame = until(page, endpoints_frame, what="the portal's endpoints page in the frame")
    expect(frame.get_by_role("heading", level=1)).to_have_text("Endpoints")
    expect(frame.locator(".app-name")).to_have_text("Acme Shop")
    cookie = next(c for c in page.context.cookies() if c["name"] == "webhook_portal_session")
    assert cookie["sameSite"] == "None"
    assert cookie["secure"] is True
    assert cookie["httpOnly"] is True
    assert not console, console
