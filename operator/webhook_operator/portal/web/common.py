"""What every page of the portal shares: rendering a template with the security headers,
the session (the ticket in an HttpOnly cookie), CSRF protection of every change, and
refusals shown as pages rather than the API's JSON.

A change is a POSTed form. It must come from this site (Fetch metadata, else Origin) and
carry the session's CSRF token, derived from the ticket so that it needs no storage and
ends with the session; a read ticket's change is refused before anything is read."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from webhook_operator.http_api.errors import ApiError
from webhook_operator.portal.context import Portal
from webhook_operator.portal.tenant import Tenant
from webhook_operator.portal.wire import Endpoint

HERE = Path(__file__).parent
STATIC = HERE / "static"
COOKIE = "webhook_portal_session"
CSRF_FIELD = "csrf"
TAG = "web page"
HTML = "text/html"
MAX_FORM_BODY = 65536

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

DISABLED_REASONS = {
    "RetriesExhausted": "retries exhausted",
    "Gone": "the receiver answered 410 Gone",
    "Paused": "paused",
}

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- headers and rendering ---------------------------------------------------------------------


def content_security_policy(frame_ancestors: list[str]) -> str:
    ancestors = " ".join(frame_ancestors) if frame_ancestors else "'none'"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:;"
        f" object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
    )


def secure_headers(response: web.StreamResponse, frame_ancestors: list[str]) -> None:
    response.headers["Content-Security-Policy"] = content_security_policy(frame_ancestors)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"


@dataclass(frozen=True)
class Session:
    """A verified session: the tenant, and the token its forms must carry."""

    tenant: Tenant
    csrf: str

    @property
    def writes(self) -> bool:
        return self.tenant.ticket.writes


def render(
    name: str,
    status: int = 200,
    session: Session | None = None,
    **values: Any,
) -> web.Response:
    """A template as a page. With a session, the template gets `tenant`, `csrf` and
    `writes` (whether to show controls that change anything)."""
    tenant = session.tenant if session is not None else None
    branding = tenant.portal if tenant is not None else None
    html = templates.get_template(name).render(
        tenant=tenant,
        csrf=session.csrf if session is not None else "",
        writes=session.writes if session is not None else False,
        title=(branding.display_name if branding else None)
        or (tenant.app_name if tenant else "Webhooks"),
        logo_url=branding.logo_url if branding else None,
        when=when,
        badge=badge,
        **values,
    )
    response = web.Response(text=html, status=status, content_type=HTML, charset="utf-8")
    secure_headers(response, list(branding.embed_origins) if branding else [])
    return response


def redirect(location: str, session: Session | None = None) -> web.Response:
    """303 See Other: after a change, the browser GETs the page that shows its result."""
    response = web.Response(status=303, headers={"Location": location})
    tenant = session.tenant if session is not None else None
    secure_headers(response, list(tenant.portal.embed_origins) if tenant else [])
    return response


# --- refusals --------------------------------------------------------------------------------

# What a refusal means to the customer: a heading and a sentence, by the API's reason.
PROBLEMS = {
    "ExpiredTicket": (
        "This link has expired",
        "The link you opened was valid for a short time only, and that time is over",
    ),
    "NoSession": (
        "Open the link again",
        "Your session has ended, or was never opened in this browser",
    ),
    "PortalDisabled": (
        "This page is turned off",
        "The platform has turned its webhooks page off for this app",
    ),
    "AppNotFound": ("This link does not work", "The app this link was for no longer exists"),
    "TooManyRequests": ("Slow down", "Too many requests in a short time: wait a moment"),
    "InvalidTicket": (
        "This link does not work",
        "The link is not valid: it may be incomplete, or older than a reset of all links",
    ),
    "ReadOnlyTicket": (
        "This link may only read",
        "The link you opened lets you look but not change anything; ask the product for a"
        " link that may manage webhooks",
    ),
    "CrossOrigin": (
        "That request came from another site",
        "Changes are accepted only from this page itself, never from another site",
    ),
    "BadCsrfToken": (
        "That form has expired",
        "The form was opened in an earlier session; open the page again and repeat the change",
    ),
    "EndpointNotFound": ("No such endpoint", "That endpoint does not exist (any more)"),
    "DeliveryNotFound": ("No such delivery", "That delivery does not exist (any more)"),
    "OutsideTicket": ("Not yours", "That belongs to another app than the one of your link"),
    "ManagedByGitOps": (
        "Managed in Git",
        "The platform team declares this endpoint in Git: it cannot be changed here",
    ),
    "DeliveryServiceUnavailable": (
        "Deliveries cannot be read now",
        "The delivery service cannot be reached; try again in a moment",
    ),
    "KubernetesUnavailable": ("Try again shortly", "The platform could not be reached just now"),
    "InvalidUTF8": (
        "That form could not be read",
        "It held characters that are not valid text (not UTF-8); type it again and send it",
    ),
    "BodyTooLarge": (
        "That form was too large",
        "What was sent is too large to be read; shorten it and send it again",
    ),
}
PROBLEMS["MissingTicket"] = PROBLEMS["NoSession"]


def problem_page(reason: str, status: int) -> web.Response:
    heading, message = PROBLEMS.get(reason) or PROBLEMS["InvalidTicket"]
    return render(
        "problem.html",
        status=status,
        heading=heading,
        message=message,
        reason=reason if reason in PROBLEMS else "InvalidTicket",
    )


def pages(handler: Page) -> Page:
    """Refusals become pages (the API middleware would answer JSON). A browser is sent on to
    GET /problem rather than shown a 4xx document, which Chromium reports as a console
    error; a JSON caller gets the page with the refusal's own status."""

    @functools.wraps(handler)
    async def page(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            if request.content_type == "application/json":
                return problem_page(exc.reason, exc.status)
            reason = exc.reason if exc.reason in PROBLEMS else "InvalidTicket"
            response = redirect(f"/problem?reason={reason}")
            if exc.status == 401:
                response.del_cookie(COOKIE, path="/")
            return response

    return page


# --- the session and changes -------------------------------------------------------------------


def secure_request(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def same_origin(request: web.Request) -> bool:
    """A cross-site form must not act in someone's session. Under Referrer-Policy
    no-referrer a browser sends `Origin: null` even from this site, so the Fetch metadata
    header decides when present."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return origin is None or origin == "null" or urlsplit(origin).netloc == request.host


def csrf_token(ticket: str) -> str:
    """The CSRF token of a session: only who holds the ticket can know it."""
    return hmac.new(b"webhook-portal-csrf", ticket.encode(), hashlib.sha256).hexdigest()[:40]


async def session(portal: Portal, request: web.Request, *, write: bool = False) -> Session:
    """The session of the cookie; 401 NoSession without one."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise ApiError(
            401,
            "NoSession",
            "your session has ended or was never opened here: open the link from the"
            " product again, or ask it for a new one",
        )
    tenant = await portal.tenant.from_token(token, write=write)
    return Session(tenant, csrf_token(token))


async def change(portal: Portal, request: web.Request) -> tuple[Session, MultiDictProxy[str]]:
    """The session and the form of a change: same origin, a manage ticket, the CSRF token."""
    if not same_origin(request):
        raise ApiError(403, "CrossOrigin", "changes are accepted only from this site")
    current = await session(portal, request, write=True)
    if request.content_length is not None and request.content_length > MAX_FORM_BODY:
        raise ApiError(413, "BodyTooLarge", "the form is too large")
    form = await request.post()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, current.csrf):
        raise ApiError(403, "BadCsrfToken", "the form's token does not match this session")
    fields = _text_fields(form)
    # aiohttp decodes a bad byte as U+FFFD; a changed value must not be stored for it.
    if any("\ufffd" in value for value in fields.values()):
        raise ApiError(400, "InvalidUTF8", "the form holds bytes that are not UTF-8")
    return current, MultiDictProxy(fields)


def _text_fields(form: MultiDictProxy[Any]) -> MultiDict[str]:
    """The form's text fields: a page's forms upload no files."""
    return MultiDict((k, v) for k, v in form.items() if isinstance(v, str))


# --- formatting --------------------------------------------------------------------------------


def badge(view: Endpoint) -> tuple[str, str | None]:
    """The health word and, for Disabled, why."""
    if view.health != "Disabled":
        return view.health, None
    reason = view.disabled_reason
    return view.health, DISABLED_REASONS.get(reason or "", reason)


def when(moment: datetime | float | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
