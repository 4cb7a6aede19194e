"""Pages of the portal: opening a ticket link, the session cookie that carries the ticket,
and the endpoints list. Every answer is HTML with a strict Content-Security-Policy; a
refusal is a plain page saying what to do, never the API's JSON."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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


def problem(error: ApiError) -> web.Response:
    """A refusal as a page: what happened and what the customer can do about it."""
    expired = error.reason == "ExpiredTicket"
    no_session = error.reason in ("MissingTicket", "NoSession")
    return render(
        "problem.html",
        status=error.status,
        heading=(
            "This link has expired"
            if expired
            else "Open the link again"
            if no_session
            else "This link does not work"
        ),
        message=error.message,
        reason=error.reason,
        show_form=error.status == 401,
    )


def pages(handler: Page) -> Page:
    """Refusals become pages (the API middleware would answer JSON)."""

    async def page(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return problem(exc)

    return page


def secure_request(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def same_origin(request: web.Request) -> bool:
    """A cross-site form must not sign a browser into someone else's ticket."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.host


async def session_token(request: web.Request, portal: Portal) -> str:
    raw = await inputs.read_body(request, MAX_TICKET_BODY, portal.settings.body_timeout)
    text = raw.decode("utf-8", errors="replace")
    if request.content_type == "application/json":
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        token = body.get("ticket") if isinstance(body, dict) else None
    else:
        token = next(iter(parse_qs(text).get("ticket", [])), None)
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
            "/theme.css",
            theme,
            "The session's app's accent colour as a stylesheet",
            content_type="text/css",
            errors=(),
            tag=TAG,
        ),
    ]


def add_static(app: web.Application) -> None:
    """The page's CSS and script, shipped inside the package; only the files that exist."""
    files = {path.name: path for path in STATIC.iterdir() if path.is_file()}

    async def static(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        response = web.Response(body=path.read_bytes(), content_type=kind)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response

    app.router.add_get("/static/{name}", static)
