"""The playground's receiver prints what arrived without letting it act on the terminal."""

from __future__ import annotations

import asyncio
import io
import json
import time

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from rich.console import Console

from webhook_operator.devcluster.receiver import PrintingReceiver
from webhook_operator.signing import decode_secret, generate_secret, webhook_headers

SECRET = generate_secret()


def deliver(receiver: PrintingReceiver, body: bytes) -> None:
    headers = webhook_headers([decode_secret(SECRET)], "evt_1", int(time.time()), body)
    request = make_mocked_request("POST", "/hooks", headers=headers, payload=None)
    request._read_bytes = body  # the mocked request has no stream to read
    response = asyncio.run(receiver.handle(request))
    assert isinstance(response, web.Response)
    assert response.status == 204


def test_markup_and_escapes_in_data_are_printed_as_text() -> None:
    out = io.StringIO()
    receiver = PrintingReceiver(Console(file=out, width=300), lambda: [SECRET])
    data = {"note": "[red]alarm[/red] \x1b]0;pwned\x07"}
    deliver(receiver, json.dumps({"type": "a.b", "data": data}).encode())
    printed = out.getvalue()
    assert "[red]alarm[/red]" in printed
    assert "\x1b" not in printed


def test_a_large_event_is_one_short_line() -> None:
    out = io.StringIO()
    receiver = PrintingReceiver(Console(file=out, width=1000), lambda: [SECRET])
    deliver(receiver, json.dumps({"type": "a.b", "data": {"blob": "x" * 200_000}}).encode())
    (line,) = out.getvalue().splitlines()
    assert len(line) < 400
    assert "…" in line
    assert "signature verified" in line


def test_an_unreadable_secret_is_said_not_raised() -> None:
    def broken() -> list[str]:
        raise TimeoutError("apiserver did not answer")

    out = io.StringIO()
    receiver = PrintingReceiver(Console(file=out, width=300), broken)
    deliver(receiver, b'{"type":"a.b","data":{}}')
    assert "signature not checked: cannot read the Secret" in out.getvalue()
