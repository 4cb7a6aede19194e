"""Hostile receivers cannot take over the terminal of whoever reads about them.

A real receiver on 127.0.0.1 answers with escape sequences in its reason phrase and body
(a raw socket server: http.server cannot send such a status line). The ping goes through
the real delivery service and the operator; the test reads what people read,
`kubectl describe webhookendpoint` and `kubectl webhooks` tables, detail views and
messages, and finds the escapes spelled out (`\\x1b`), never the raw bytes. `-o json`
still holds the answer exactly as it was received.

Each hostile answer is one line of HOSTILE_ANSWERS."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.harness import Cluster, DeliveryProcess, OperatorProcess, eventually
from tests.integration.test_kubectl_plugin import (
    Plugin,
    app_obj,
    apply,
    endpoint_obj,
    get_endpoint,
)


class Hostile(NamedTuple):
    reason: bytes  # the reason phrase, as sent
    body: bytes  # the response body, as sent
    shown_reason: str  # the reason phrase as people must see it
    shown_body: str  # the response body as people must see it


HOSTILE_ANSWERS = {
    "terminal title": Hostile(
        b"\x1b]0;pwned\x07Oops", b"\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07Oops", "\\x1b]0;pwned\\x07"
    ),
    "colours and clear screen": Hostile(
        b"\x1b[31mRED\x1b[0m",
        b"\x1b[2J\x1b[Hcleared",
        "\\x1b[31mRED\\x1b[0m",
        "\\x1b[2J\\x1b[Hcleared",
    ),
    "forged rows": Hostile(
        b"Bad\x0bGateway",
        b"ok\ndlv_forged  ep  invoice.paid  delivered\r\n",
        "Bad\\x0bGateway",
        "ok\\ndlv_forged  ep  invoice.paid  delivered\\r\\n",
    ),
    "8-bit CSI and DEL": Hostile(b"\x9b31m\x7fX", b"\xc2\x9b31m", "\\x9b31m\\x7fX", "\\x9b31m"),
    # NUL is stored as U+FFFD (PostgreSQL text cannot hold it), which is harmless to show.
    "overwrite": Hostile(
        b"OK\x08\x08\x00FAIL", b"\rall good", "OK\\x08\\x08\ufffdFAIL", "\\rall good"
    ),
    # A reason phrase is read as ISO-8859-1, so the UTF-8 of U+202E arrives as a C1 byte;
    # a body is UTF-8 and arrives as U+202E itself.
    "right-to-left override": Hostile(
        "\u202edeliaf".encode(), "\u202edeliaf".encode(), "\xe2\\x80\xaedeliaf", "\\u202edeliaf"
    ),
}

# What a terminal acts on instead of printing (newlines separate the lines of output).
ACTED_ON = {
    *range(0x00, 0x0A),
    *range(0x0B, 0x20),
    0x7F,
    *range(0x80, 0xA0),
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
}


def raw_controls(text: str) -> list[str]:
    return [f"U+{ord(ch):04X}" for ch in text if ord(ch) in ACTED_ON]


class RawReceiver:
    """Answers every request on 127.0.0.1 with exactly the bytes given."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self._read_request(conn)
                    conn.sendall(self.answer)
                except OSError:
                    continue
            self.requests += 1

    @staticmethod
    def _read_request(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 1 << 20:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return
            body += chunk

    def close(self) -> None:
        self.stopped.set()
        self.server.close()
        self.thread.join(timeout=5)


def answer(hostile: Hostile) -> bytes:
    head = (
        b"HTTP/1.1 500 " + hostile.reason + b"\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Length: " + str(len(hostile.body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n"
    )
    return head + hostile.body


@pytest.fixture(params=list(HOSTILE_ANSWERS), ids=list(HOSTILE_ANSWERS))
def hostile(request: pytest.FixtureRequest) -> Hostile:
    return HOSTILE_ANSWERS[request.param]


@pytest.fixture
def receiver(hostile: Hostile) -> Iterator[RawReceiver]:
    r = RawReceiver(answer(hostile))
    yield r
    r.close()


@pytest.fixture
def plugin(
    cluster: Cluster,
    operator: OperatorProcess,
    delivery_service: DeliveryProcess,
    namespace: str,
    tmp_path: Path,
) -> Plugin:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "WEBHOOK_OPERATOR_SERVER", "WEBHOOK_OPERATOR_TOKEN")
    }
    env.update(
        WEBHOOK_OPERATOR_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path / "home"), NO_COLOR="1"
    )
    return Plugin(cluster, delivery_service, namespace, env)


def test_receiver_text_is_shown_escaped(
    plugin: Plugin, cluster: Cluster, receiver: RawReceiver, hostile: Hostile
) -> None:
    ns = plugin.namespace
    # One attempt: the ping's outcome is final at once.
    apply(cluster, ns, app_obj(), endpoint_obj("ep", receiver.url, retry={"schedule": []}))
    eventually(
        lambda: get_endpoint(cluster, ns, "ep").get("status", {}).get("secret"),
        what="endpoint ep reconciled",
    )
    received_error = "500 " + hostile.reason.decode("latin-1").replace("\x00", "\ufffd")
    shown_error = "500 " + hostile.shown_reason

    # The ping's own report.
    pinged = plugin.run("ping", "ep", expect=1)
    assert raw_controls(pinged.stdout + pinged.stderr) == []
    assert pinged.stdout == f"ping to ep failed (exhausted): {shown_error}\n"

    # Status, as the operator writes it and `kubectl describe` prints it.
    def status_error() -> str:
        error = get_endpoint(cluster, ns, "ep").get("status", {}).get("lastError")
        assert error, "no lastError yet"
        return str(error)

    assert eventually(status_error, what="status.lastError") == shown_error
    described = cluster.kubectl("describe", "webhookendpoint", "ep", "-n", ns).stdout
    assert raw_controls(described) == []
    (line,) = [x for x in described.splitlines() if "Last Error:" in x]
    assert line.split("Last Error:", 1)[1].strip() == shown_error

    # The deliveries table: the header and one row, no forged ones.
    table = plugin.run("deliveries", "--endpoint", "ep").stdout
    assert raw_controls(table) == []
    _, row = table.splitlines()
    assert row.endswith(shown_error)
    delivery_id = row.split()[0]

    # The detail view: fields, then the attempts with the response preview.
    view = plugin.run("delivery", delivery_id)
    assert raw_controls(view.stdout + view.stderr) == []
    fields, attempts = view.stdout.split("\n\n")
    labelled = dict(line.split(":", 1) for line in fields.splitlines())
    assert labelled["Last error"].strip() == shown_error
    _, attempt_row = attempts.splitlines()
    assert re.search(f"{re.escape(shown_error)} +{re.escape(hostile.shown_body)}$", attempt_row)

    # -o json: safe to print too, and still exactly what the receiver sent.
    shown_json = plugin.run("delivery", delivery_id, "-o", "json").stdout
    assert raw_controls(shown_json) == []
    (attempt,) = json.loads(shown_json)["attemptLog"]
    assert attempt["error"] == received_error
    assert attempt["responseSnippet"] == hostile.body.decode()
