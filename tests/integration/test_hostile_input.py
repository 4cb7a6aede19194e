"""Hostile but careful input against the real delivery service: every refusal is a 4xx
JSON error with a reason, nothing refused is stored, one tenant's bad events never fail
another tenant's good ones, and bodies arrive whole whatever their chunking.

The table is the place to add a case: one line each."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from kubernetes import client

from tests.harness import (
    Cluster,
    DeliveryProcess,
    OperatorProcess,
    Producer,
    Receiver,
    eventually,
)
from tests.integration.test_delivery import app, apply, endpoint, ready
from tests.integration.test_hostile_display import RawReceiver

pytestmark = pytest.mark.usefixtures("operator")

DLV = "dlv_01JAAAAAAAAAAAAAAAAAAAAAAA"
JSON = {"Content-Type": "application/json"}


@dataclass
class Tenant:
    namespace: str
    producer: Producer
    receiver: Receiver

    def events_url(self, svc: DeliveryProcess, app_name: str = "billing") -> str:
        return f"{svc.url}/v1/namespaces/{self.namespace}/apps/{app_name}/events"


def open_tenant(cluster: Cluster, receiver: Receiver, label: str) -> Iterator[Tenant]:
    """A namespace with app `billing` (no catalog) and endpoint `ep` subscribed to every
    event, delivering to `receiver` at path `/<label>`, and a producer allowed on it."""
    name = f"t-{label}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # No catalog: any well-formed type is accepted, so the refusals below are the parser's.
    apply(cluster, name, app(types=()), endpoint("ep", receiver.url(f"/{label}"), events=("*",)))
    ready(cluster, name, "ep")
    try:
        yield Tenant(name, Producer(cluster, name, ["billing"]), receiver)
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def tenant(
    cluster: Cluster, module_receiver: Receiver, operator: OperatorProcess
) -> Iterator[Tenant]:
    yield from open_tenant(cluster, module_receiver, "a")


@pytest.fixture(scope="module")
def other_tenant(
    cluster: Cluster, module_receiver: Receiver, operator: OperatorProcess
) -> Iterator[Tenant]:
    yield from open_tenant(cluster, module_receiver, "b")


@pytest.fixture(scope="module")
def stats_reader(cluster: Cluster, tenant: Tenant) -> dict[str, str]:
    """A ServiceAccount allowed to read endpoint stats (what the operator uses)."""
    name = f"stats-{secrets.token_hex(3)}"
    ns = tenant.namespace
    cluster.kubectl("create", "serviceaccount", name, "-n", ns)
    cluster.kubectl(
        "create",
        "clusterrole",
        name,
        "--verb=list",
        "--resource=webhookendpoints.webhook-operator.dev",
    )
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        name,
        f"--clusterrole={name}",
        f"--serviceaccount={ns}:{name}",
    )
    token = cluster.kubectl("create", "token", name, "-n", ns).stdout.strip()
    return {"Authorization": f"Bearer {token}"}


def event(type_: str = "invoice.paid", data: object = None, **extra: object) -> bytes:
    return json.dumps({"type": type_, "data": data or {"invoiceId": "in_1"}, **extra}).encode()


def nested(depth: int) -> bytes:
    return b'{"type": "a.b", "data": {"x": ' + b"[" * depth + b"]" * depth + b"}}"


# (case, body, extra headers, status, reason) for POST .../events
EMIT_CASES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("not json", b"{nope", JSON, 400, "MalformedJSON"),
    ("empty body", b"", JSON, 400, "MalformedJSON"),
    ("array body", b"[]", JSON, 400, "MalformedRequest"),
    ("number body", b"5", JSON, 400, "MalformedRequest"),
    ("null body", b"null", JSON, 400, "MalformedRequest"),
    ("100,000 nested arrays", nested(100_000), JSON, 400, "TooDeep"),
    ("65 levels of data", nested(64), JSON, 400, "TooDeep"),
    (
        "lone surrogate in data",
        rb'{"type":"a.b","data":{"x":"\ud800"}}',
        JSON,
        400,
        "InvalidUnicode",
    ),
    (
        "lone surrogate in a key",
        rb'{"type":"a.b","data":{"\udfff":1}}',
        JSON,
        400,
        "InvalidUnicode",
    ),
    ("reversed pair", rb'{"type":"a.b","data":{"x":"\udc00\ud800"}}', JSON, 400, "InvalidUnicode"),
    ("invalid UTF-8", b'{"type":"a.b","data":{"x":"\xff"}}', JSON, 400, "InvalidUTF8"),
    ("UTF-16 body", event().decode().encode("utf-16"), JSON, 400, "InvalidUTF8"),
    ("NaN", b'{"type":"a.b","data":{"x":NaN}}', JSON, 400, "MalformedJSON"),
    ("Infinity", b'{"type":"a.b","data":{"x":-Infinity}}', JSON, 400, "MalformedJSON"),
    ("1e400", b'{"type":"a.b","data":{"x":1e400}}', JSON, 400, "MalformedJSON"),
    ("duplicate top-level key", b'{"type":"a.b","type":"c.d"}', JSON, 400, "DuplicateKey"),
    ("duplicate key in data", b'{"type":"a.b","data":{"x":1,"x":2}}', JSON, 400, "DuplicateKey"),
    ("no type", b'{"data": {}}', JSON, 400, "InvalidEventType"),
    ("type not a string", b'{"type": 5}', JSON, 400, "InvalidEventType"),
    ("empty type", event(""), JSON, 400, "InvalidEventType"),
    ("space in type", event("invoice paid"), JSON, 400, "InvalidEventType"),
    ("newline in type", event("invoice.paid\nforged.row"), JSON, 400, "InvalidEventType"),
    ("escape in type", event("invoice.\x1b[31mpaid"), JSON, 400, "InvalidEventType"),
    ("NUL in type", event("a\x00b"), JSON, 400, "InvalidEventType"),
    ("lone surrogate in type", rb'{"type":"a.\ud800"}', JSON, 400, "InvalidUnicode"),
    ("upper case type", event("Invoice.Paid"), JSON, 400, "InvalidEventType"),
    ("empty segment", event("invoice..paid"), JSON, 400, "InvalidEventType"),
    ("trailing dot", event("invoice."), JSON, 400, "InvalidEventType"),
    ("wildcard type", event("invoice.*"), JSON, 400, "InvalidEventType"),
    ("257-character type", event("a" * 257), JSON, 400, "InvalidEventType"),
    ("empty id", event(id=""), JSON, 400, "InvalidEventId"),
    ("id not a string", event(id=5), JSON, 400, "InvalidEventId"),
    ("newline in id", event(id="a\nb"), JSON, 400, "InvalidEventId"),
    ("NUL in id", event(id="a\x00b"), JSON, 400, "InvalidEventId"),
    ("escape in id", event(id="\x1b]0;pwned\x07"), JSON, 400, "InvalidEventId"),
    ("257-character id", event(id="k" * 257), JSON, 400, "InvalidEventId"),
    ("data an array", b'{"type":"a.b","data":[1]}', JSON, 400, "MalformedEvent"),
    ("data a string", b'{"type":"a.b","data":"x"}', JSON, 400, "MalformedEvent"),
    ("data null", b'{"type":"a.b","data":null}', JSON, 400, "MalformedEvent"),
    ("unknown field", event(extra=1), JSON, 400, "MalformedEvent"),
    ("text/plain", event(), {"Content-Type": "text/plain"}, 415, "UnsupportedMediaType"),
    (
        "form-encoded (curl -d without -H)",
        event(),
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "UnsupportedMediaType",
    ),
    (
        "JSON in latin-1",
        event(),
        {"Content-Type": "application/json; charset=latin-1"},
        415,
        "UnsupportedMediaType",
    ),
    ("over the limit", event(data={"x": "a" * 300_000}), JSON, 413, "TooLarge"),
]

# (case, method, path relative to the namespace (or absolute when it starts with /v1 or
# /internal), JSON body or None, status, reason)
ROUTE_CASES: list[tuple[str, str, str, bytes | None, int, str]] = [
    ("replay body an array", "POST", "endpoints/ep/replay", b"[]", 400, "MalformedRequest"),
    ("replay body a number", "POST", "endpoints/ep/replay", b"5", 400, "MalformedRequest"),
    ("replay body null", "POST", "endpoints/ep/replay", b"null", 400, "MalformedRequest"),
    ("replay without since", "POST", "endpoints/ep/replay", b"{}", 400, "MissingSince"),
    ("replay since a number", "POST", "endpoints/ep/replay", b'{"since": 5}', 400, "BadSince"),
    ("replay since not a time", "POST", "endpoints/ep/replay", b'{"since": "x"}', 400, "BadSince"),
    (
        "replay since month 13",
        "POST",
        "endpoints/ep/replay",
        b'{"since": "2026-13-45T00:00:00Z"}',
        400,
        "BadSince",
    ),
    (
        "replay statuses a string",
        "POST",
        "endpoints/ep/replay",
        b'{"since": "2026-01-01T00:00:00Z", "statuses": "failed"}',
        400,
        "BadStatus",
    ),
    (
        "replay unknown status",
        "POST",
        "endpoints/ep/replay",
        b'{"since": "2026-01-01T00:00:00Z", "statuses": ["nope"]}',
        400,
        "BadStatus",
    ),
    ("replay invalid JSON", "POST", "endpoints/ep/replay", b"{", 400, "MalformedJSON"),
    ("limit ²", "GET", "endpoints/ep/deliveries?limit=%C2%B2", None, 400, "BadLimit"),
    ("limit 0", "GET", "endpoints/ep/deliveries?limit=0", None, 400, "BadLimit"),
    ("limit 501", "GET", "endpoints/ep/deliveries?limit=501", None, 400, "BadLimit"),
    ("limit huge", "GET", "endpoints/ep/deliveries?limit=" + "9" * 40, None, 400, "BadLimit"),
    ("limit negative", "GET", "apps/billing/deliveries?limit=-1", None, 400, "BadLimit"),
    ("unknown status", "GET", "apps/billing/deliveries?status=nope", None, 400, "BadStatus"),
    ("cursor garbage", "GET", "apps/billing/deliveries?cursor=x", None, 400, "BadCursor"),
    ("cursor NUL", "GET", "apps/billing/deliveries?cursor=%00", None, 400, "BadCursor"),
    (
        "endpoint filter NUL",
        "GET",
        "apps/billing/deliveries?endpoint=%00",
        None,
        400,
        "InvalidName",
    ),
    ("delivery id NUL", "GET", "deliveries/dlv_%00", None, 400, "InvalidName"),
    ("delivery id too long", "GET", f"deliveries/{DLV}A", None, 400, "InvalidName"),
    ("resend bad id", "POST", "deliveries/x%0Ay/resend", None, 400, "InvalidName"),
    ("endpoint name NUL", "POST", "endpoints/e%00p/ping", None, 400, "InvalidName"),
    ("app name upper case", "GET", "apps/Billing/deliveries", None, 400, "InvalidName"),
    ("namespace NUL", "GET", f"/v1/namespaces/a%00b/deliveries/{DLV}", None, 400, "InvalidName"),
    ("unknown route", "GET", "/v1/nothing-here", None, 404, "NotFound"),
    ("wrong method", "GET", "apps/billing/events", None, 405, "MethodNotAllowed"),
]

STATS_CASES: list[tuple[str, str, int, str]] = [
    ("since ¹", "since=%C2%B9", 400, "BadCursor"),
    ("since huge", "since=" + "9" * 30, 400, "BadCursor"),
    ("since negative", "since=-5", 400, "BadCursor"),
]


def assert_json_error(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert error["reason"] == reason, error
    assert error["message"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in EMIT_CASES],
)
def test_emit_refuses_with_a_reason(
    delivery_service: DeliveryProcess,
    tenant: Tenant,
    body: bytes,
    headers: dict[str, str],
    status: int,
    reason: str,
) -> None:
    response = httpx.post(
        tenant.events_url(delivery_service),
        content=body,
        headers={**tenant.producer.headers, **headers},
        timeout=30,
    )
    assert_json_error(response, status, reason)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in ROUTE_CASES],
)
def test_routes_refuse_with_a_reason(
    delivery_service: DeliveryProcess,
    tenant: Tenant,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    reason: str,
) -> None:
    if not path.startswith("/"):
        path = f"/v1/namespaces/{tenant.namespace}/{path}"
    response = httpx.request(
        method,
        delivery_service.url + path,
        content=body,
        headers={**tenant.producer.headers, **JSON},
        timeout=30,
    )
    assert_json_error(response, status, reason)


@pytest.mark.parametrize(
    ("query", "status", "reason"), [pytest.param(*c[1:], id=c[0]) for c in STATS_CASES]
)
def test_stats_route_refuses_with_a_reason(
    delivery_service: DeliveryProcess,
    stats_reader: dict[str, str],
    query: str,
    status: int,
    reason: str,
) -> None:
    response = httpx.get(
        f"{delivery_service.url}/internal/v1/endpoint-stats?{query}",
        headers=stats_reader,
        timeout=30,
    )
    assert_json_error(response, status, reason)


def test_nothing_refused_was_stored_or_delivered(
    delivery_service: DeliveryProcess, tenant: Tenant
) -> None:
    # Runs after the tables above (file order): none of their bodies became a delivery.
    response = httpx.get(
        f"{delivery_service.url}/v1/namespaces/{tenant.namespace}/apps/billing/deliveries",
        headers=tenant.producer.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []
    assert tenant.receiver.received("/a") == []


# -- bodies arrive whole -----------------------------------------------------------------


def _raw_post(
    port: int, path: str, headers: dict[str, str], chunks: list[bytes], pause: float
) -> tuple[int, bytes]:
    """POST with chunked transfer encoding, one write per chunk, pausing between them:
    what a slow network does to a large body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for chunk in chunks:
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            time.sleep(pause)
        sock.sendall(b"0\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head_bytes, _, rest = answer.partition(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head_bytes.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        while len(rest) < length:
            rest += sock.recv(65536)
        return int(head_bytes.split()[1]), rest


@pytest.mark.parametrize(
    ("size", "chunk", "pause"),
    [
        pytest.param(16_000, 8_192, 0.05, id="16KB-in-8KB-chunks"),
        pytest.param(150_000, 8_192, 0.005, id="150KB-in-8KB-chunks"),
        pytest.param(200_000, 1_000, 0.0, id="200KB-in-1KB-chunks"),
        pytest.param(250_000, 65_536, 0.02, id="250KB-in-64KB-chunks"),
    ],
)
def test_large_events_arrive_whole_whatever_the_chunking(
    delivery_service: DeliveryProcess, tenant: Tenant, size: int, chunk: int, pause: float
) -> None:
    data = {"blob": secrets.token_hex(size // 2)[: size - 100], "n": size}
    body = event("blob.sent", data)
    assert len(body) <= 256 * 1024
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    path = f"/v1/namespaces/{tenant.namespace}/apps/billing/events"
    status, answer = _raw_post(
        delivery_service.port,
        path,
        {**tenant.producer.headers, **JSON},
        chunks,
        pause,
    )
    assert status == 202, answer
    event_id = json.loads(answer)["eventId"]

    def arrived() -> dict[str, object] | None:
        for request in tenant.receiver.received("/a"):
            if request["headers"]["webhook-id"] == event_id:
                return request
        return None

    request = eventually(arrived, timeout=30, what="the large event is delivered")
    assert request is not None
    assert json.loads(request["body"])["data"] == data  # type: ignore[index]


def test_a_chunked_body_over_the_limit_is_refused(
    delivery_service: DeliveryProcess, tenant: Tenant
) -> None:
    body = event("blob.sent", {"blob": "a" * 300_000})
    chunks = [body[i : i + 65_536] for i in range(0, len(body), 65_536)]
    status, answer = _raw_post(
        delivery_service.port,
        f"/v1/namespaces/{tenant.namespace}/apps/billing/events",
        {**tenant.producer.headers, **JSON},
        chunks,
        0.0,
    )
    assert status == 413, answer
    assert json.loads(answer)["error"]["reason"] == "TooLarge"


# -- one tenant's bad events never fail another's -----------------------------------------


async def _flood(
    url_a: str, headers_a: dict[str, str], url_b: str, headers_b: dict[str, str], count: int
) -> tuple[list[int], list[int]]:
    """`count` bad events from tenant A interleaved with `count` good ones from tenant B,
    all in flight together so they share ingest batches."""
    bad_bodies = [
        rb'{"type":"a.b","data":{"x":"\ud800"}}',
        event("a\x00b"),
        rb'{"type":"a.b","data":{"x":"a\u0000b","y":"\udbff"}}',
    ]
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def post(url: str, headers: dict[str, str], body: bytes) -> int:
            response = await http.post(url, content=body, headers={**headers, **JSON})
            return response.status_code

        tasks = []
        for i in range(count):
            tasks.append(post(url_a, headers_a, bad_bodies[i % len(bad_bodies)]))
            tasks.append(post(url_b, headers_b, event("good.event", {"i": i}, id=f"good-{i}")))
        codes = await asyncio.gather(*tasks)
    return list(codes[0::2]), list(codes[1::2])


def _check_isolation(svc: DeliveryProcess, a: Tenant, b: Tenant) -> None:
    bad, good = asyncio.run(
        _flood(a.events_url(svc), a.producer.headers, b.events_url(svc), b.producer.headers, 200)
    )
    assert set(bad) == {400}, sorted(set(bad))
    assert good == [202] * 200, sorted(set(good))


def test_one_tenants_bad_events_never_fail_anothers(
    delivery_service: DeliveryProcess, tenant: Tenant, other_tenant: Tenant
) -> None:
    _check_isolation(delivery_service, tenant, other_tenant)
    eventually(
        lambda: len(other_tenant.receiver.received("/b")) >= 200,
        timeout=60,
        what="every good event delivered",
    )


@pytest.fixture(scope="module")
def postgres_service(
    cluster: Cluster, postgres_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeliveryProcess]:
    """A delivery service on PostgreSQL beside the session's SQLite one."""
    svc = DeliveryProcess(
        cluster.kubeconfig, tmp_path_factory.mktemp("pg"), postgres_dsn, name="delivery-pg"
    )
    svc.start()
    yield svc
    svc.stop()


def test_one_tenants_bad_events_never_fail_anothers_on_postgresql(
    postgres_service: DeliveryProcess, tenant: Tenant, other_tenant: Tenant
) -> None:
    _check_isolation(postgres_service, tenant, other_tenant)


def test_a_receiver_answering_with_nul_is_recorded_on_postgresql(
    cluster: Cluster, postgres_service: DeliveryProcess, tenant: Tenant
) -> None:
    # PostgreSQL text cannot hold NUL: the answer is kept with U+FFFD in its place instead
    # of failing the batch of results it was recorded with.
    body = b"oops\x00there"
    raw = RawReceiver(
        b"HTTP/1.1 500 Bad\x00Thing\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    try:
        apply(
            cluster,
            tenant.namespace,
            endpoint("nul-answer", raw.url, events=("*",), retry={"schedule": []}),
        )
        ready(cluster, tenant.namespace, "nul-answer")
        base = f"{postgres_service.url}/v1/namespaces/{tenant.namespace}"
        ping = httpx.post(
            f"{base}/endpoints/nul-answer/ping", headers=tenant.producer.headers, timeout=30
        )
        assert ping.status_code == 202, ping.text
        delivery_id = ping.json()["deliveryId"]

        def recorded() -> dict[str, object] | None:
            detail = httpx.get(
                f"{base}/deliveries/{delivery_id}", headers=tenant.producer.headers, timeout=30
            ).json()
            return detail if detail.get("attemptLog") else None

        detail = eventually(recorded, timeout=30, what="the attempt is recorded")
        assert detail is not None
        attempt = detail["attemptLog"][0]  # type: ignore[index]
        assert attempt["error"] == "500 Bad\ufffdThing"
        assert attempt["responseSnippet"] == "oops\ufffdthere"
    finally:
        raw.close()


# -- slow clients ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient_service(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeliveryProcess]:
    workdir = tmp_path_factory.mktemp("impatient")
    svc = DeliveryProcess(
        cluster.kubeconfig,
        workdir,
        f"sqlite:///{workdir / 'delivery.db'}",
        "--header-timeout=1",
        "--body-timeout=1",
        name="impatient",
    )
    svc.start()
    yield svc
    svc.stop()


def _closed_within(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes the connection (reading what it sends)."""
    started = time.monotonic()
    sock.settimeout(limit)
    while True:
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except TimeoutError:
            raise AssertionError(f"the connection was still open after {limit} s") from None


def test_a_client_that_never_finishes_its_headers_is_disconnected(
    impatient_service: DeliveryProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", impatient_service.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/namespaces/x/apps/y/events HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # trickling bytes does not keep it alive
            time.sleep(0.3)
            sock.sendall(b"X-Slow: 1\r\n")
        assert _closed_within(sock, 5) < 5


def test_a_client_that_never_finishes_its_body_gets_408(
    impatient_service: DeliveryProcess, tenant: Tenant
) -> None:
    with socket.create_connection(("127.0.0.1", impatient_service.port), timeout=10) as sock:
        head = (
            f"POST /v1/namespaces/{tenant.namespace}/apps/billing/events HTTP/1.1\r\n"
            f"Host: x\r\nAuthorization: {tenant.producer.headers['Authorization']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        sock.sendall(head.encode())
        sock.settimeout(10)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"BodyTimeout" in answer
