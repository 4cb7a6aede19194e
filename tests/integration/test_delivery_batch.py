"""The batch emit route (POST .../apps/{app}/events:batch) against the real stack: real
apiserver and RBAC, the real delivery service and store, real receivers checking the
signatures with the public `standardwebhooks` package.

What a producer relies on: each event of a batch is answered as the single route would
answer it alone (status, reason, message), in the order sent; a bad event never fails the
others; ids are idempotency keys per event, within a batch, across batches and across the
two routes; a batch that cannot be read as a whole, or is not allowed, stores nothing."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests import pg
from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Producer, Receiver, eventually
from tests.integration.test_delivery import (
    app,
    apply,
    deliveries,
    emit,
    endpoint,
    secret_values,
    setup_app,
)
from tests.integration.test_hostile_input import EMIT_CASES, JSON, Tenant, open_tenant

pytestmark = pytest.mark.usefixtures("operator")

SCHEMA = {
    "type": "object",
    "required": ["invoiceId"],
    "properties": {"invoiceId": {"type": "string"}},
}
# Single-route cases that break the batch's own JSON (its events can no longer be told
# apart), or are about headers: the batch is refused whole (tests/unit/test_delivery_batch.py).
NOT_PER_EVENT = {"not json", "empty body", "UTF-16 body"}


@pytest.fixture(scope="module")
def postgres_service(
    cluster: Cluster,
    postgres_dsn: str,
    tmp_path_factory: pytest.TempPathFactory,
    operator: OperatorProcess,
) -> Iterator[DeliveryProcess]:
    """A delivery service on its own PostgreSQL database, beside the session's SQLite one."""
    dsn = pg.create_database(postgres_dsn, "batch")
    svc = DeliveryProcess(
        cluster.kubeconfig, tmp_path_factory.mktemp("batch-pg"), dsn, name="delivery-batch-pg"
    )
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
        pg.drop_database(postgres_dsn, dsn)


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest) -> DeliveryProcess:
    name = "delivery_service" if request.param == "sqlite" else "postgres_service"
    svc: DeliveryProcess = request.getfixturevalue(name)
    assert svc.process is not None
    assert svc.process.poll() is None, svc.log()[-3000:]
    return svc


@pytest.fixture(scope="module")
def batch_tenant(
    cluster: Cluster, module_receiver: Receiver, operator: OperatorProcess
) -> Iterator[Tenant]:
    """App `billing` without a catalog, endpoint `ep` for every event, delivering to /batch."""
    yield from open_tenant(cluster, module_receiver, "batch")


def batch_body(*events: dict[str, Any] | bytes) -> bytes:
    parts = [e if isinstance(e, bytes) else json.dumps(e).encode() for e in events]
    return b'{"events": [' + b", ".join(parts) + b"]}"


def emit_batch(
    svc: DeliveryProcess,
    namespace: str,
    producer: Producer | None,
    *events: dict[str, Any] | bytes,
    app_name: str = "billing",
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.post(
        f"{svc.url}/v1/namespaces/{namespace}/apps/{app_name}/events:batch",
        content=raw if raw is not None else batch_body(*events),
        headers={**(producer.headers if producer else {}), **JSON, **(headers or {})},
        timeout=60,
    )


def results(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    """The per-event results of a batch that was read, checked for order and totals."""
    assert response.status_code == 200, response.text
    answer = response.json()
    found: list[dict[str, Any]] = answer["results"]
    assert [r["index"] for r in found] == list(range(count))
    accepted = sum(r["status"] == 202 for r in found)
    assert (answer["accepted"], answer["failed"]) == (accepted, count - accepted)
    return found


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()["error"]
    return response.status_code, body["reason"], body["message"]


def alone(result: dict[str, Any]) -> tuple[int, str, str]:
    """A batch result in the shape of a single-route error answer."""
    return result["status"], result["error"]["reason"], result["error"]["message"]


def by_event_id(receiver: Receiver, path: str) -> dict[str, dict[str, Any]]:
    return {r["headers"]["webhook-id"]: r for r in receiver.received(path)}


# -- a full batch --------------------------------------------------------------------------


def test_a_hundred_events_in_one_batch_arrive_signed(
    cluster: Cluster, namespace: str, receiver: Receiver, service: DeliveryProcess
) -> None:
    producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")))
    events = [
        {"type": "invoice.paid", "data": {"invoiceId": f"in_{n}", "n": n}} for n in range(100)
    ]
    found = results(emit_batch(service, namespace, producer, *events), 100)
    assert all(r["status"] == 202 for r in found), [r for r in found if r["status"] != 202]
    assert all(r["deliveries"] == 1 and r["duplicate"] is False for r in found)
    assert all("error" not in r for r in found)
    event_ids = [r["eventId"] for r in found]
    assert len(set(event_ids)) == 100

    eventually(
        lambda: len(receiver.received("/hook")) >= 100, timeout=60, what="100 deliveries arrive"
    )
    time.sleep(0.5)
    arrived = by_event_id(receiver, "/hook")
    assert len(receiver.received("/hook")) == 100
    assert set(arrived) == set(event_ids)
    secret = secret_values(cluster, namespace, "ep")["secret"]
    for n, event_id in enumerate(event_ids):  # result n is event n of the request
        request = arrived[event_id]
        payload = Webhook(secret).verify(request["body"], request["headers"])
        assert payload["id"] == event_id
        assert payload["data"] == {"invoiceId": f"in_{n}", "n": n}


# -- good and bad events together ----------------------------------------------------------


def test_bad_events_fail_alone_with_the_single_routes_answers(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(
        cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")), schema=SCHEMA
    )
    good = [{"type": "invoice.paid", "data": {"invoiceId": f"in_{n}"}} for n in range(3)]
    bad = {
        "bad type name": json.dumps({"type": "Invoice.Paid"}).encode(),
        "duplicate key": b'{"type":"invoice.paid","data":{"invoiceId":"a","invoiceId":"b"}}',
        "too deep": b'{"type":"invoice.paid","data":{"x":' + b"[" * 64 + b"]" * 64 + b"}}",
        "non-object data": b'{"type":"invoice.paid","data":[1,2]}',
        "not an object": b"42",
        "not UTF-8": b'{"type":"invoice.paid","data":{"invoiceId":"\xc3\x28"}}',
        "not in the catalog": json.dumps({"type": "refund.issued"}).encode(),
        "schema mismatch": json.dumps({"type": "invoice.paid", "data": {"invoiceId": 7}}).encode(),
        "bad id": json.dumps({"type": "invoice.paid", "id": "a\nb"}).encode(),
    }
    sent: list[dict[str, Any] | bytes] = [good[0], *list(bad.values())[:5], good[1]]
    sent += [*list(bad.values())[5:], good[2]]
    found = results(emit_batch(delivery_service, namespace, producer, *sent), len(sent))

    for result, event in zip(found, sent, strict=True):
        if isinstance(event, dict):
            assert (result["status"], result["deliveries"]) == (202, 1), result
            continue
        single = emit(delivery_service, namespace, producer, raw=event)
        assert alone(result) == error_of(single), event
    statuses = {name: found[sent.index(raw)]["status"] for name, raw in bad.items()}
    assert statuses == {name: 422 if "catalog" in name or "schema" in name else 400 for name in bad}

    good_ids = [r["eventId"] for r in found if r["status"] == 202]
    eventually(lambda: len(receiver.received("/hook")) >= 3, what="the good events arrive")
    time.sleep(1)
    secret = secret_values(cluster, namespace, "ep")["secret"]
    arrived = by_event_id(receiver, "/hook")
    assert len(receiver.received("/hook")) == 3
    assert set(arrived) == set(good_ids)
    for event, event_id in zip(good, good_ids, strict=True):
        payload = Webhook(secret).verify(arrived[event_id]["body"], arrived[event_id]["headers"])
        assert payload["data"] == event["data"]
    stored = deliveries(delivery_service, namespace, producer, "ep")["items"]
    assert sorted(d["eventId"] for d in stored) == sorted(good_ids)


def test_every_refusal_of_the_single_route_is_an_events_own_in_a_batch(
    delivery_service: DeliveryProcess, batch_tenant: Tenant
) -> None:
    """The single route's table of refusals (tests/integration/test_hostile_input.py), every
    body an event of one batch between good events: each gets its own case's answer, and the
    good ones are all accepted and delivered."""
    cases = [c for c in EMIT_CASES if c[2] == JSON and c[0] not in NOT_PER_EVENT]
    good = json.dumps({"type": "good.event", "data": {"ok": True}}).encode()
    sent = [good]
    for case in cases:
        sent += [case[1], good]
    found = results(
        emit_batch(delivery_service, batch_tenant.namespace, batch_tenant.producer, *sent),
        len(sent),
    )
    for n, case in enumerate(cases):
        result = found[2 * n + 1]
        assert (result["status"], result["error"]["reason"]) == case[3:], (case[0], result)
    assert all(r["status"] == 202 for r in found[0::2])
    good_ids = {r["eventId"] for r in found[0::2]}
    eventually(
        lambda: good_ids <= set(by_event_id(batch_tenant.receiver, "/batch")),
        what="every good event delivered",
    )
    time.sleep(0.5)
    assert set(by_event_id(batch_tenant.receiver, "/batch")) == good_ids


# -- idempotency ---------------------------------------------------------------------------


def test_ids_are_idempotency_keys_within_and_across_batches(
    cluster: Cluster, namespace: str, receiver: Receiver, service: DeliveryProcess
) -> None:
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("a", receiver.url("/a")),
        endpoint("b", receiver.url("/b")),
    )

    def sent(key: str, n: int) -> dict[str, Any]:
        return {"type": "invoice.paid", "id": key, "data": {"invoiceId": key, "n": n}}

    first = results(
        emit_batch(service, namespace, producer, sent("A", 1), sent("B", 2), sent("A", 3)), 3
    )
    assert [(r["status"], r["duplicate"], r["deliveries"]) for r in first] == [
        (202, False, 2),
        (202, False, 2),
        (202, True, 2),
    ]
    assert first[2]["eventId"] == first[0]["eventId"]  # the earlier event, in this batch
    second = results(emit_batch(service, namespace, producer, sent("B", 4), sent("C", 5)), 2)
    assert [(r["status"], r["duplicate"]) for r in second] == [(202, True), (202, False)]
    assert second[0]["eventId"] == first[1]["eventId"]  # the earlier event, in another batch

    # Across the two routes, both ways.
    single = emit(service, namespace, producer, id_="A")
    assert single.status_code == 202
    assert single.json() == {"eventId": first[0]["eventId"], "deliveries": 2, "duplicate": True}
    assert emit(service, namespace, producer, id_="D").status_code == 202
    third = results(emit_batch(service, namespace, producer, sent("D", 6)), 1)
    assert third[0]["duplicate"] is True

    keys = {"A": first[0], "B": first[1], "C": second[1]}
    eventually(
        lambda: len(receiver.received("/a")) >= 4 and len(receiver.received("/b")) >= 4,
        what="A, B, C and D delivered to both endpoints",
    )
    time.sleep(1)
    for path in ("/a", "/b"):
        arrived = by_event_id(receiver, path)
        assert len(receiver.received(path)) == 4
        assert len(arrived) == 4
        for key, result in keys.items():
            data = json.loads(arrived[result["eventId"]]["body"])["data"]
            assert data["invoiceId"] == key
        assert json.loads(arrived[first[0]["eventId"]]["body"])["data"]["n"] == 1  # the first A


# -- batches refused whole -----------------------------------------------------------------

GOOD = {"type": "good.event", "data": {"n": 1}}
ONE = json.dumps(GOOD).encode()
# (case, body, extra headers, status, reason)
REFUSED: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("101 events", batch_body(*[GOOD] * 101), {}, 400, "TooManyEvents"),
    ("an empty list", b'{"events": []}', {}, 400, "EmptyBatch"),
    ("a list, not an object", b"[" + json.dumps(GOOD).encode() + b"]", {}, 400, "MalformedRequest"),
    ("a number", b"7", {}, 400, "MalformedRequest"),
    ("one event, not a batch", json.dumps(GOOD).encode(), {}, 400, "MalformedRequest"),
    ("events not a list", b'{"events": {"type": "a.b"}}', {}, 400, "MalformedRequest"),
    ("a field besides events", b'{"events": [' + ONE + b'], "x": 1}', {}, 400, "MalformedRequest"),
    ("events twice", b'{"events": [' + ONE + b'], "events": []}', {}, 400, "DuplicateKey"),
    ("not closed", b'{"events": [' + ONE, {}, 400, "MalformedJSON"),
    ("events not told apart", batch_body(ONE, b"{nope", ONE), {}, 400, "MalformedJSON"),
    ("not UTF-8 at all", batch_body(GOOD).decode().encode("utf-16"), {}, 400, "InvalidUTF8"),
    ("text/plain", batch_body(GOOD), {"Content-Type": "text/plain"}, 415, "UnsupportedMediaType"),
    (
        "over the batch limit (4 MiB)",
        batch_body(*[{"type": "a.b", "data": {"x": "a" * 50_000}}] * 90),
        {},
        413,
        "TooLarge",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in REFUSED],
)
def test_a_batch_refused_whole_stores_nothing(
    delivery_service: DeliveryProcess,
    batch_tenant: Tenant,
    body: bytes,
    headers: dict[str, str],
    status: int,
    reason: str,
) -> None:
    before = stored_events(delivery_service, batch_tenant)
    answer = emit_batch(
        delivery_service, batch_tenant.namespace, batch_tenant.producer, raw=body, headers=headers
    )
    got = error_of(answer)
    assert got[:2] == (status, reason), got
    assert got[2]
    assert stored_events(delivery_service, batch_tenant) == before


def stored_events(svc: DeliveryProcess, tenant: Tenant) -> set[str]:
    response = httpx.get(
        f"{svc.url}/v1/namespaces/{tenant.namespace}/apps/billing/deliveries",
        params={"limit": 500},
        headers=tenant.producer.headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {d["eventId"] for d in response.json()["items"]}


def test_a_batch_within_the_limit_of_large_events_is_accepted(
    delivery_service: DeliveryProcess, batch_tenant: Tenant
) -> None:
    """15 events of 250 KB, each within the single route's limit: 3.75 MB in one batch."""
    events = [{"type": "big.event", "data": {"n": n, "x": "a" * 250_000}} for n in range(15)]
    body = batch_body(*events)
    assert 3_500_000 < len(body) < 4 * 1024 * 1024
    answer = emit_batch(delivery_service, batch_tenant.namespace, batch_tenant.producer, raw=body)
    found = results(answer, 15)
    assert all(r["status"] == 202 for r in found)
    ids = {r["eventId"] for r in found}
    eventually(
        lambda: ids <= set(by_event_id(batch_tenant.receiver, "/batch")),
        timeout=60,
        what="the large events arrive",
    )


# -- who may emit --------------------------------------------------------------------------


def test_authentication_and_rbac_as_the_single_route(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")))
    apply(cluster, namespace, app("payroll"))
    svc = delivery_service
    readers = Producer(cluster, namespace, ["billing"], name="reader", verbs=("get", "list"))
    admin = Producer(cluster, namespace, ["billing", "nope"], name="admin")
    cases: list[tuple[str, Producer | None, str, dict[str, str], int, str]] = [
        ("no token", None, "billing", {}, 401, "Unauthorized"),
        ("not a token", None, "billing", {"Authorization": "Bearer x"}, 401, "Unauthorized"),
        ("an app not granted", producer, "payroll", {}, 403, "Forbidden"),
        ("an app that does not exist, not granted", producer, "nope", {}, 403, "Forbidden"),
        ("no verb emit", readers, "billing", {}, 403, "Forbidden"),
        ("an app that does not exist", admin, "nope", {}, 404, "AppNotFound"),
        ("a name that cannot exist", producer, "Billing", {}, 400, "InvalidName"),
    ]  # fmt: skip
    event = {"type": "invoice.paid", "data": {"invoiceId": "in_1"}}
    for case, who, app_name, headers, status, reason in cases:
        batch = emit_batch(svc, namespace, who, event, app_name=app_name, headers=headers)
        single = emit(svc, namespace, who, app_name=app_name, headers=headers)
        assert error_of(batch)[:2] == (status, reason), (case, batch.text)
        assert error_of(batch) == error_of(single), case
    message = error_of(emit_batch(svc, namespace, producer, event, app_name="payroll"))[2]
    assert "emit" in message
    assert "payroll" in message

    # Another namespace's app of the same name: RBAC is per namespace.
    other = f"{namespace}-y"[:63]
    cluster.kubectl("create", "namespace", other)
    try:
        apply(cluster, other, app())
        assert emit_batch(svc, other, producer, event).status_code == 403
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false")
    time.sleep(0.5)
    assert receiver.received("/hook") == []
    assert results(emit_batch(svc, namespace, producer, event), 1)[0]["status"] == 202


# -- the database down ---------------------------------------------------------------------


def test_a_database_that_is_down_fails_the_whole_batch_with_retry_after(
    cluster: Cluster, namespace: str, receiver: Receiver, tmp_path: Path
) -> None:
    """SQLite locked by another process past the busy timeout: 503 StoreUnavailable with
    Retry-After for the whole batch, nothing stored; the same batch sent again once the
    database is back is accepted whole, none of it a duplicate."""
    database = tmp_path / "d.db"
    svc = DeliveryProcess(cluster.kubeconfig, tmp_path, f"sqlite:///{database}", name="locked")
    svc.start()
    try:
        producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")))
        events = [
            {"type": "invoice.paid", "id": f"k-{n}", "data": {"invoiceId": f"in_{n}"}}
            for n in range(5)
        ]
        events_and_a_bad_one: list[dict[str, Any] | bytes] = [*events, b'{"type":"Bad"}']
        # The caller's token and permission checked (and cached) first: while SQLite is
        # locked the service's loop waits on it, and a first check of the token then times
        # out as KubernetesUnavailable instead of the store's refusal under test.
        warmed = emit_batch(svc, namespace, producer, b'{"type":"Bad"}')
        assert warmed.status_code == 200, warmed.text
        lock = sqlite3.connect(database, timeout=30)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            answer = emit_batch(svc, namespace, producer, *events_and_a_bad_one)
        finally:
            lock.rollback()
            lock.close()
        assert error_of(answer)[:2] == (503, "StoreUnavailable"), answer.text
        assert answer.headers["Retry-After"] == "5"

        found = results(emit_batch(svc, namespace, producer, *events_and_a_bad_one), 6)
        assert [(r["status"], r.get("duplicate")) for r in found] == [(202, False)] * 5 + [
            (400, None)
        ]
        # Stored once each: the refused try left nothing behind. (Whether they are then
        # delivered is the dispatcher's recovery from the outage, not this route's.)
        stored = deliveries(svc, namespace, producer, "ep")["items"]
        assert sorted(d["eventId"] for d in stored) == sorted(r["eventId"] for r in found[:5])
    finally:
        svc.stop()
