"""Opening the portal: the page a ticket link opens, the exchange of the ticket for a
session cookie, the page that says why a link did not work, and the assets (stylesheets,
scripts, icon, the app's accent colour)."""

from __future__ import annotations

import json
import mimetypes

from aiohttp import web

from webhook_operator.http_api import inputs
from webhook_operator.http_api.errors import ApiError
from webhook_operator.http_api.openapi import Operation
from webhook_operator.portal.context import Portal
from webhook_operator.portal.web.common import (
    COOKIE,
    HTML,
    STATIC,
    TAG,
    pages,
    problem_page,
    redirect,
    render,
    same_origin,
    secure_headers,
    secure_request,
)

MAX_TICKET_BODY = 16384


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


def embedded(request: web.Request) -> bool:
    """Whether the session is being opened inside a frame (Fetch metadata): the frame's
    page is then usually another site's, whose `frame-ancestors` permission let it in."""
    return request.headers.get("Sec-Fetch-Dest") == "iframe"


def operations(portal: Portal) -> list[Operation]:
    @pages
    async def open_link(request: web.Request) -> web.StreamResponse:
        response = render("open.html")
        # Holds no data and cannot know the app yet: any app's embedding site may frame it.
        secure_headers(response, portal.directory.embed_origins())
        return response

    @pages
    async def open_session(request: web.Request) -> web.StreamResponse:
        if not same_origin(request):
            raise ApiError(403, "CrossOrigin", "a session can only be opened from this site")
        token = await session_token(request, portal)
        tenant = await portal.tenant.from_token(token)
        if request.content_type == "application/json":
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = redirect("/endpoints")
        max_age = max(1, tenant.ticket.expires_at - int(portal.clock()))
        if embedded(request):
            # A frame in another site's page gets no SameSite=Strict cookie, so there the
            # session is a partitioned cookie (CHIPS) of that site only, which browsers
            # accept only as Secure; CSRF tokens and the same-origin check guard changes.
            # Written by hand: Python 3.11's cookie module knows no Partitioned attribute.
            response.headers.add(
                "Set-Cookie",
                f"{COOKIE}={token}; Max-Age={max_age}; Path=/; HttpOnly; Secure;"
                " SameSite=None; Partitioned",
            )
        else:
            response.set_cookie(
                COOKIE,
                token,
                max_age=max_age,
                path="/",
                httponly=True,
                samesite="Strict",
                secure=secure_request(request),
            )
        secure_headers(response, list(tenant.portal.embed_origins))
        return response

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
    """The page's CSS, scripts and icon, shipped inside the package; only the files there."""
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
        "The web page's stylesheets, scripts and icon",
        content_type="application/octet-stream",
        errors=(404,),
        tag=TAG,
    )
