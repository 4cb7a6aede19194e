"""One error shape for every HTTP API of the project:
{"error": {"reason": "CamelCase", "message": "for people"}}.

The middleware turns whatever a handler raises into that shape. Each server adds
translators for the exceptions of its own dependencies (the delivery service's database,
say) so this module stays free of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from webhook_operator.kube_auth import AuthorizationUnavailable, Forbidden, Unauthenticated

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Translator = Callable[[web.Request, Exception], web.StreamResponse | None]


class ApiError(Exception):
    def __init__(
        self, status: int, reason: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.headers = headers


def error_response(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"reason": reason, "message": message}}, status=status, headers=headers
    )


def _kube_auth(_: web.Request, exc: Exception) -> web.StreamResponse | None:
    if isinstance(exc, Unauthenticated):
        return error_response(401, "Unauthorized", str(exc))
    if isinstance(exc, Forbidden):
        return error_response(403, "Forbidden", str(exc))
    if isinstance(exc, AuthorizationUnavailable):
        return error_response(
            503, "KubernetesUnavailable", str(exc), headers={"Retry-After": str(exc.retry_after)}
        )
    return None


def middleware(*translators: Translator, server: str = "the server") -> Middleware:
    """Every error leaves as JSON with a reason, whatever raised it."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.reason, exc.message, exc.headers)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return error_response(
                    exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason
                )
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            for translate in (_kube_auth, *translators):
                response = translate(request, exc)
                if response is not None:
                    return response
            log.exception("%s %s failed", request.method, request.path)
            return error_response(
                500, "InternalError", f"{server} failed on this request; see its log"
            )

    return errors
