"""The playground's receiver: a local HTTP endpoint that verifies each delivery's
signature with the endpoint's current secret and prints what arrived."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from rich.console import Console
from rich.markup import escape

from webhook_operator.display_text import one_line
from webhook_operator.signing import InvalidSignature, verify

SecretLookup = Callable[[], list[str]]
SHOWN_CHARS = 300


@dataclass
class PrintingReceiver:
    console: Console
    secrets: SecretLookup  # the endpoint's valid secrets, read fresh from the cluster
    received: int = 0
    _cached: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verdict = self._verify(body, headers)
        self.received += 1
        try:
            event = json.loads(body)
            summary = f"{event.get('type')}  data={json.dumps(event.get('data'))}"
        except ValueError:
            summary = body[:200].decode("utf-8", "replace")
        # What arrived is someone else's text: neither terminal escapes nor rich markup; and
        # a 200 KB event is one line, not a screenful.
        shown = escape(one_line(f"{headers.get('webhook-id', '?')}  {summary}", SHOWN_CHARS))
        self.console.print(f"[bold]⇢ delivery[/bold] {shown}  {verdict}")
        return web.Response(status=204)

    def _verify(self, body: bytes, headers: dict[str, str]) -> str:
        for attempt in range(2):
            if attempt or not self._cached:
                try:  # a rotation may have happened: read again
                    self._cached = self.secrets()
                except Exception as exc:
                    why = escape(one_line(str(exc), 200))
                    return f"[yellow]signature not checked: cannot read the Secret ({why})[/yellow]"
            try:
                verify(self._cached, headers, body)
                return "[green]signature verified[/green]"
            except InvalidSignature as exc:
                reason = str(exc)
            except ValueError as exc:
                reason = str(exc)
        return f"[red]signature NOT verified: {reason}[/red]"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        return app


def secret_values(data: dict[str, str] | None) -> list[str]:
    """Decoded values of a generated signing Secret: current first, then previous."""
    values = []
    for key in ("secret", "previous"):
        raw = (data or {}).get(key)
        if raw:
            values.append(base64.b64decode(raw).decode())
    return values
