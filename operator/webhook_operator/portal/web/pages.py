"""Pages of the portal: opening a ticket link, the session cookie that carries the ticket,
and the endpoints list. Every answer is HTML with a strict Content-Security-Policy; a
refusal is a plain page saying what to do, never the API's JSON."""

from __future__ import annotations

import functools
import json
import mimetypes
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from webhook_operator.http_api import inputs
from webhook_operator.http_api.errors import ApiError
from webhook_operator.http_api.openapi import Operation
from webhook_operator.portal import endpoint_rules
from webhook_operator.portal.context import Portal
from webhook_operator.portal.tenant import Tenant
from webhook_operator.portal.wire import Endpoint

HERE = Path(__file__).parent
STATIC = HERE / "static"
COOKIE = "webhook_portal_session"
TAG = "web page"
HTML = "text/html"
MAX_TICKET_BODY = 16384

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)

DISABLED_REASONS = {
    "RetriesExhausted": "retries exhausted",
    "Gone": "the receiver answered 410 Gone",
    "Paused": "paused",
}

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def render(
    name: str,
    status: int = 200,
    tenant: Tenant | None = None,
    **values: Any,
) -> web.Response:
    branding = tenant.portal if tenant is not None else None
    html = templates.get_template(name).render(
        tenant=tenant,
        title=(branding.display_name if branding else None)
        or (tenant.app_name if tenant else "Webhooks"),
        logo_url=branding.logo_url if branding else None,
        **values,
    )
    response = web.Response(text=html, status=status, content_type=HTML, charset="utf-8")
    secure_headers(response, list(branding.embed_origins) if branding else [])
    return response


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
            response = web.Response(status=303, headers={"Location": f"/problem?reason={reason}"})
            secure_headers(response, [])
            if exc.status == 401:
                response.del_cookie(COOKIE, path="/")
            return response

    return page


def secure_request(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def same_origin(request: web.Request) -> bool:
    """A cross-site form must not sign a browser into someone else's ticket. Under
    Referrer-Policy no-referrer a browser sends `Origin: null` even from this site, so the
    Fetch metadata header decides when present."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return origin is None or origin == "null" or urlsplit(origin).netloc == request.host


async def session_token(request: web.Request, portal: Portal) -> str:
    if request.content_type == "application/json":
        raw = await inputs.read_body(request, MAX_TICKET_BODY, portal.settings.body_timeout)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        token = body.get("ticket") if isinstance(body, dict) else None
    else:
        token = (await request.post()).get("ticket")
    if not isinstance(token, str) or not token.strip():
        raise ApiError(401, "MissingTicket", "paste the ticket from the link you were given")
    # A pasted link works as well as the bare ticket.
    return token.strip().rpartition("#ticket=")[2]


async def cookie_tenant(portal: Portal, request: web.Request) -> Tenant:
    token = request.cookies.get(COOKIE)
    if not token:
        raise ApiError(
            401,
            "NoSession",
            "your session has ended or was never opened here: open the link from the"
            " product again, or ask it for a new one",
        )
    return await portal.tenant.from_token(token)


def badge(view: Endpoint) -> tuple[str, str | None]:
    """The health word and, for Disabled, why."""
    if view.health != "Disabled":
        return view.health, None
    reason = view.disabled_reason
    return view.health, DISABLED_REASONS.get(reason or "", reason)


def when(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else None


def operations(portal: Portal) -> list[Operation]:
    @pages
    async def open_link(request: web.Request) -> web.StreamResponse:
        return render("open.html")

    @pages
    async def open_session(request: web.Request) -> web.StreamResponse:
        if not same_origin(request):
            raise ApiError(403, "CrossOrigin", "a session can only be opened from this site")
        token = await session_token(request, portal)
        tenant = await portal.tenant.from_token(token)
        if request.content_type == "application/json":
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = web.Response(status=303, headers={"Location": "/endpoints"})
        response.set_cookie(
            COOKIE,
            token,
            max_age=max(1, tenant.ticket.expires_at - int(portal.clock())),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=secure_request(request),
        )
        secure_headers(response, list(tenant.portal.embed_origins))
        return response

    @pages
    async def endpoints(request: web.Request) -> web.StreamResponse:
        tenant = await cookie_tenant(portal, request)
        views = sorted(
            (
                endpoint_rules.view(obj)
                for obj in portal.directory.app_endpoints(tenant.namespace, tenant.app_name)
            ),
            key=lambda v: v.name,
        )
        return render(
            "endpoints.html",
            tenant=tenant,
            endpoints=views,
            badge=badge,
            when=when,
            expires=when(datetime.fromtimestamp(tenant.ticket.expires_at, UTC)),
        )

    async def problem(request: web.Request) -> web.StreamResponse:
        return problem_page(request.query.get("reason", ""), 200)

    async def theme(request: web.Request) -> web.StreamResponse:
        """The app's accent colour as a stylesheet: CSP allows no inline style."""
        accent = None
        token = request.cookies.get(COOKIE)
        if token:
            try:
                accent = (await portal.tenant.from_token(token)).portal.accent_color
            except ApiError:
                accent = None
        css = f":root {{ --accent: {accent}; }}\n" if accent else ""
        response = web.Response(text=css, content_type="text/css", charset="utf-8")
        secure_headers(response, [])
        return response

    return [
        static_files(),
        Operation(
            "GET",
            "/",
            open_link,
            "The page a portalUrl opens: exchanges the ticket in the fragment for a session",
            content_type=HTML,
            errors=(),
            tag=TAG,
        ),
        Operation(
            "POST",
            "/session",
            open_session,
            "Open a session: the ticket (form field or JSON `ticket`) becomes an HttpOnly,"
            " SameSite=Strict cookie that expires with it",
            status=303,
            content_type=HTML,
            errors=(401, 403, 404, 413),
            tag=TAG,
        ),
        Operation(
            "GET",
            "/endpoints",
            endpoints,
            "The endpoints list page of the session's app",
            content_type=HTML,
            errors=(401, 403, 404),
            tag=TAG,
        ),
        Operation(
            "GET",
            "/problem",
            problem,
            "Why a link or session did not work and what to do (`reason`: the refusal's reason)",
            content_type=HTML,
            errors=(),
            tag=TAG,
        ),
        Operation(
            "GET",
            "/theme.css",
            theme,
            "The session's app's accent colour as a stylesheet",
            content_type="text/css",
            errors=(),
            tag=TAG,
        ),
    ]


def static_files() -> Operation:
    """The page's CSS, script and icon, shipped inside the package; only the files there."""
    files = {path.name: path for path in STATIC.iterdir() if path.is_file()}

    async def static(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise ApiError(404, "NotFound", "no such file")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        response = web.Response(body=path.read_bytes(), content_type=kind)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response

    return Operation(
        "GET",
        "/static/{name}",
        static,
        "The web page's stylesheet, script and icon",
        content_type="application/octet-stream",
        errors=(404,),
        tag=TAG,
    )
