"""The batch emit route's own logic, with nothing behind it: how a batch body is cut into
its events (each then read by the single route's function, so each is refused for the
same reason as alone), what refuses a batch as a whole, and how the handler answers when
the store fails some or all of a batch. The HTTP-level behaviour against the real stack is
in tests/integration/test_delivery_batch.py."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from webhook_operator.delivery import ingest
from webhook_operator.delivery.api import Routes
from webhook_operator.delivery.registry import AppConfig

SCHEMA = {"type": "object", "required": ["invoiceId"]}
CATALOG = AppConfig("shop", "billing", {"invoice.paid": Draft202012Validator(SCHEMA), "a.b": None})
FREE = AppConfig("shop", "free", {})
GOOD = b'{"type":"invoice.paid","data":{"invoiceId":"in_1"}}'
MAX_EVENT = 4096


def batch(*events: bytes, sep: bytes = b", ") -> bytes:
    return b'{"events": [' + sep.join(events) + b"]}"


def outcome(result: ingest.Submitted | ingest.IngestError) -> tuple[Any, ...]:
    if isinstance(result, ingest.IngestError):
        return (result.status, result.reason, result.message)
    return ("ok", result.type, result.idempotency_key, result.data)


def alone(app: AppConfig, raw: bytes) -> tuple[Any, ...]:
    """What the single route's function answers for these bytes."""
    if len(raw) > MAX_EVENT:
        return (413, "TooLarge")
    try:
        return outcome(ingest.check_event(app, raw))
    except ingest.IngestError as exc:
        return outcome(exc)


# Events the single route accepts or refuses, each one line. In a batch each must get the
# same answer as alone, between two good events that stay good.
EVENTS: list[tuple[str, bytes]] = [
    ("good", GOOD),
    ("good with id and spaces", b'{ "type" : "a.b" , "id" : "k-1" , "data" : { } }'),
    ("non-ASCII kept", '{"type":"a.b","data":{"name":"Zoë ✓ 😀"}}'.encode()),
    ("big integer kept", b'{"type":"a.b","data":{"n":123456789012345678901234567890}}'),
    ("brackets inside strings", b'{"type":"a.b","data":{"s":"]}\\"[{"}}'),
    ("bad type", b'{"type":"Invoice.Paid"}'),
    ("no type", b'{"data":{}}'),
    ("bad id", b'{"type":"a.b","id":""}'),
    ("control character in id", b'{"type":"a.b","id":"a\\nb"}'),
    ("duplicate key", b'{"type":"a.b","data":{"x":1,"x":2}}'),
    ("duplicate top-level key", b'{"type":"a.b","type":"c.d"}'),
    ("65 levels", b'{"type":"a.b","data":{"x":' + b"[" * 64 + b"]" * 64 + b"}}"),
    ("100,000 levels", b'{"type":"a.b","data":{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"),
    ("data an array", b'{"type":"a.b","data":[1]}'),
    ("data null", b'{"type":"a.b","data":null}'),
    ("unknown field", b'{"type":"a.b","extra":1}'),
    ("a number", b"5"),
    ("a string", b'"invoice.paid"'),
    ("null", b"null"),
    ("an array", b"[1, 2]"),
    ("invalid UTF-8", b'{"type":"a.b","data":{"x":"\xff\xfe"}}'),
    ("UTF-8 of a surrogate", b'{"type":"a.b","data":{"x":"\xed\xa0\x80"}}'),
    ("lone surrogate escape", b'{"type":"a.b","data":{"x":"\\ud800"}}'),
    ("NaN", b'{"type":"a.b","data":{"x":NaN}}'),
    ("1e400", b'{"type":"a.b","data":{"x":1e400}}'),
    ("missing colon", b'{"type" "a.b"}'),
    ("bare word", b"nope"),
    ("raw control character in a string", b'{"type":"a.b","data":{"x":"a\x01b"}}'),
    ("unknown type", b'{"type":"refund.issued"}'),
    ("schema mismatch", b'{"type":"invoice.paid","data":{"invoiceId":7}}'),
    ("schema mismatch, missing", b'{"type":"invoice.paid","data":{}}'),
    ("over the event limit", b'{"type":"a.b","data":{"x":"' + b"a" * MAX_EVENT + b'"}}'),
]


@pytest.mark.parametrize(("raw"), [pytest.param(raw, id=name) for name, raw in EVENTS])
@pytest.mark.parametrize("app", [CATALOG, FREE], ids=["catalog", "no catalog"])
def test_each_event_gets_the_single_routes_answer(raw: bytes, app: AppConfig) -> None:
    results = ingest.check_batch(app, batch(GOOD, raw, GOOD), MAX_EVENT)
    assert len(results) == 3
    got = outcome(results[1])
    assert got[: len(alone(app, raw))] == alone(app, raw)
    assert outcome(results[0]) == outcome(results[2]) == alone(app, GOOD)


def test_every_event_of_the_table_in_one_batch_in_order() -> None:
    raws = [raw for _, raw in EVENTS]
    results = ingest.check_batch(CATALOG, batch(*raws, sep=b",\n\t "), MAX_EVENT)
    assert [outcome(r)[:2] for r in results] == [alone(CATALOG, raw)[:2] for raw in raws]


def test_events_are_cut_exactly_whatever_the_whitespace() -> None:
    raws = [raw for _, raw in EVENTS if len(raw) < 1000]
    body = b' \n{ "events" :\r\n[ ' + b" ,\n ".join(raws) + b" \n] \t} \n"
    assert ingest.split_batch(body) == raws


def test_the_key_may_be_escaped_and_the_list_may_hold_100() -> None:
    body = b'{"\\u0065vents": [' + b",".join([GOOD] * 100) + b"]}"
    assert len(ingest.split_batch(body)) == 100


# (case, body, status, reason): the batch as a whole, nothing stored.
REFUSED: list[tuple[str, bytes, int, str]] = [
    ("empty body", b"", 400, "MalformedJSON"),
    ("an array", b"[" + GOOD + b"]", 400, "MalformedRequest"),
    ("a number", b"5", 400, "MalformedRequest"),
    ("null", b"null", 400, "MalformedRequest"),
    ("one event, not a batch", GOOD, 400, "MalformedRequest"),
    ("no events key", b"{}", 400, "MalformedRequest"),
    ("events not a list", b'{"events": {"type": "a.b"}}', 400, "MalformedRequest"),
    ("events null", b'{"events": null}', 400, "MalformedRequest"),
    ("an unknown field", b'{"events": [' + GOOD + b'], "dryRun": true}', 400, "MalformedRequest"),
    ("events twice", b'{"events": [' + GOOD + b'], "events": []}', 400, "DuplicateKey"),
    ("empty list", b'{"events": []}', 400, "EmptyBatch"),
    ("101 events", batch(*[GOOD] * 101), 400, "TooManyEvents"),
    ("UTF-16", batch(GOOD).decode().encode("utf-16"), 400, "InvalidUTF8"),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + batch(GOOD), 400, "MalformedJSON"),
    ("not closed", b'{"events": [' + GOOD, 400, "MalformedJSON"),
    ("list not closed", b'{"events": [' + GOOD + b"}", 400, "MalformedJSON"),
    ("trailing comma in the list", batch(GOOD, b""), 400, "MalformedJSON"),
    ("trailing comma in the object", b'{"events": [' + GOOD + b"],}", 400, "MalformedJSON"),
    ("missing comma", batch(GOOD, GOOD, sep=b" "), 400, "MalformedJSON"),
    ("text after the object", batch(GOOD) + b" {}", 400, "MalformedJSON"),
    ("a bracket that does not close", batch(b'{"type": [}', GOOD), 400, "MalformedJSON"),
    ("a string never closed", batch(b'{"type": "a.b'), 400, "MalformedJSON"),
    ("a key not a string", b"{events: [1]}", 400, "MalformedJSON"),
]


@pytest.mark.parametrize(
    ("body", "status", "reason"), [pytest.param(*case[1:], id=case[0]) for case in REFUSED]
)
def test_a_batch_that_cannot_be_read_is_refused_whole(
    body: bytes, status: int, reason: str
) -> None:
    with pytest.raises(ingest.IngestError) as refused:
        ingest.check_batch(FREE, body, MAX_EVENT)
    assert (refused.value.status, refused.value.reason) == (status, reason)
    assert refused.value.message


def test_broken_events_cost_a_bounded_scan() -> None:
    """Broken events are skipped by brackets and quotes, a Python step each: past a budget
    the batch is refused whole instead of holding the event loop."""
    broken = b'{"type" 1, "data": ' + b"[{" * 1000 + b"}]" * 1000 + b"}"
    results = ingest.check_batch(FREE, batch(broken, GOOD), 1 << 20)
    assert [outcome(r)[1] for r in results] == ["MalformedJSON", "invoice.paid"]
    with pytest.raises(ingest.IngestError) as refused:
        ingest.check_batch(FREE, batch(*[broken] * 5), 1 << 20)
    assert refused.value.reason == "MalformedJSON"
    assert "too long to skip" in refused.value.message


def test_the_batch_limit_is_100_events_capped_at_4_mib() -> None:
    assert ingest.batch_limit(256 * 1024) == 4 * 1024 * 1024
    assert ingest.batch_limit(1024) == 100 * 1024
    assert ingest.batch_limit(16 * 1024 * 1024) == 16 * 1024 * 1024  # one event always fits


# -- the handler, with a service that is nothing but what the route uses --------------------


class FakeService:
    def __init__(self, accept: Callable[[int, ingest.Submitted], dict[str, Any]]) -> None:
        self.settings = SimpleNamespace(max_body=MAX_EVENT, body_timeout=5.0)
        self.registry = SimpleNamespace(apps={("shop", "billing"): CATALOG})
        self.authorizer = SimpleNamespace(require=self._allow)
        self.accepted: list[ingest.Submitted] = []
        self._accept = accept

    async def _allow(self, *_: Any, **__: Any) -> None:
        return None

    async def accept(self, namespace: str, app: AppConfig, submitted: ingest.Submitted) -> Any:
        index = len(self.accepted)
        self.accepted.append(submitted)
        return self._accept(index, submitted)


def stored(index: int, submitted: ingest.Submitted) -> dict[str, Any]:
    return {"eventId": f"evt_{index}", "deliveries": 2, "duplicate": False}


def post(service: FakeService, body: bytes) -> tuple[int, dict[str, str], Any]:
    return asyncio.run(_post(service, body))


async def _post(service: FakeService, body: bytes) -> tuple[int, dict[str, str], Any]:
    async with TestClient(TestServer(Routes(cast(Any, service)).app())) as http:
        response = await http.post(
            "/v1/namespaces/shop/apps/billing/events:batch",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        return response.status, dict(response.headers), await response.json()


def test_results_come_in_request_order_with_the_single_routes_fields() -> None:
    service = FakeService(stored)
    bad = b'{"type":"Bad"}'
    status, headers, answer = post(service, batch(GOOD, bad, GOOD))
    assert status == 200
    assert "Retry-After" not in headers
    message = alone(CATALOG, bad)[2]
    assert answer == {
        "accepted": 2,
        "failed": 1,
        "results": [
            {"index": 0, "status": 202, "eventId": "evt_0", "deliveries": 2, "duplicate": False},
            {
                "index": 1,
                "status": 400,
                "error": {"reason": "InvalidEventType", "message": message},
            },
            {"index": 2, "status": 202, "eventId": "evt_1", "deliveries": 2, "duplicate": False},
        ],
    }
    assert len(service.accepted) == 2


def test_a_database_that_is_down_fails_the_whole_batch_with_retry_after() -> None:
    def down(index: int, submitted: ingest.Submitted) -> dict[str, Any]:
        raise sqlite3.OperationalError("database is locked")

    status, headers, answer = post(FakeService(down), batch(GOOD, b'{"type":"Bad"}', GOOD))
    assert status == 503
    assert headers["Retry-After"] == "5"
    assert answer["error"]["reason"] == "StoreUnavailable"


def test_events_the_store_fails_after_others_were_stored_are_503_each() -> None:
    """PostgreSQL stores each event in its own transaction: when the database goes away
    midway, the events stored stay accepted and only the others are to be sent again."""

    def then_down(index: int, submitted: ingest.Submitted) -> dict[str, Any]:
        if index:
            raise sqlite3.OperationalError("gone")
        return stored(index, submitted)

    status, headers, answer = post(FakeService(then_down), batch(GOOD, GOOD))
    assert status == 200
    assert headers["Retry-After"] == "5"
    assert [r["status"] for r in answer["results"]] == [202, 503]
    assert answer["results"][1]["error"]["reason"] == "StoreUnavailable"
    assert (answer["accepted"], answer["failed"]) == (1, 1)


def test_an_event_the_store_refuses_fails_alone_with_500() -> None:
    def refuses_second(index: int, submitted: ingest.Submitted) -> dict[str, Any]:
        if index == 1:
            raise sqlite3.IntegrityError("constraint")
        return stored(index, submitted)

    status, _, answer = post(FakeService(refuses_second), batch(GOOD, GOOD, GOOD))
    assert status == 200
    assert [r["status"] for r in answer["results"]] == [202, 500, 202]
    assert answer["results"][1]["error"]["reason"] == "InternalError"


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"[]", "MalformedRequest"), (batch(*[GOOD] * 101), "TooManyEvents")],
)
def test_a_refused_batch_reaches_no_store(body: bytes, reason: str) -> None:
    service = FakeService(stored)
    status, _, answer = post(service, body)
    assert (status, answer["error"]["reason"]) == (400, reason)
    assert service.accepted == []


def test_a_batch_over_its_limit_is_413() -> None:
    service = FakeService(stored)
    limit = ingest.batch_limit(MAX_EVENT)
    body = b'{"events": [' + GOOD + b"]" + b" " * limit + b"}"
    status, _, answer = post(service, body)
    assert (status, answer["error"]["reason"]) == (413, "TooLarge")
    assert str(limit) in answer["error"]["message"]
    assert service.accepted == []
