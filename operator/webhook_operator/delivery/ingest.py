"""Turning a producer's POST into an event and its deliveries, with the reasons a person
can act on when the event is refused; a batch of events into each event's own bytes, so
that each is read and refused exactly as the single route reads one. No I/O: the HTTP
layer and the store are around it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from webhook_operator import ids
from webhook_operator.api.delivery_wire import MAX_BATCH_EVENTS as MAX_BATCH_EVENTS
from webhook_operator.api.v1alpha1 import EVENT_TYPE_PATTERN
from webhook_operator.delivery.registry import AppConfig, EndpointConfig
from webhook_operator.event_filter import Bindings, Verdict
from webhook_operator.store.base import DeliveryStatus, NewDelivery, NewEvent

MAX_ID_LENGTH = 256
MAX_TYPE_LENGTH = 256
# Nesting levels of `data`. Real events stay far below; the limit keeps every later step
# (schema validation, the encoder, receivers' parsers) clear of recursion limits.
MAX_DATA_DEPTH = 64
EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
# A \uD800-\uDFFF escape: the only way a surrogate gets into a string parsed from UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class IngestError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Submitted:
    type: str
    idempotency_key: str | None
    data: Any
    traceparent: str | None = None


# W3C Trace Context: version-traceid-parentid-flags, lower-case hex. Version 00 is exactly
# this; a later version may append fields after a "-", and its first four are read as 00's.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def trace_context(header: str | None) -> str | None:
    """The producer's `traceparent` header, checked, as every attempt will send it: the
    trace continues into the receiver with the producer's span as parent. None without
    one; IngestError with the reason for one that is not a W3C traceparent."""
    if header is None:
        return None
    value = header.strip()
    match = _TRACEPARENT.fullmatch(value)
    version = match.group(1) if match else ""
    if (
        match is None
        or version == "ff"
        or (version == "00" and match.group(5))
        or set(match.group(2)) == {"0"}
        or set(match.group(3)) == {"0"}
    ):
        raise IngestError(
            400,
            "InvalidTraceparent",
            "the traceparent header must be a W3C trace context such as"
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 (lower-case hex;"
            " trace and parent ids not all zeros)",
        )
    return value if version == "00" else f"00-{match.group(2)}-{match.group(3)}-{match.group(4)}"


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # 1e400 would become infinity, which JSON cannot carry to the receiver.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


# The standard library's decoder keeps integers of any size exact (orjson would turn
# those beyond 64 bits into floats) and reports duplicate keys through the pairs hook.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_object, parse_constant=_no_constant, parse_float=_finite_float
)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` levels (level by level, no recursion)."""
    level = [value]
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below.extend(c for c in children if isinstance(c, dict | list))
        level = below
    return False


def parse_json(raw: bytes, max_depth: int) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity, no lone surrogates, at
    most `max_depth` levels. Anything else is an IngestError with a reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(400, "InvalidUTF8", f"the body is not valid UTF-8: {exc}") from None
    try:
        value = _DECODER.decode(text)
    except _DuplicateKey as exc:
        raise IngestError(
            400, "DuplicateKey", f"the key {exc.key!r} appears twice in one object"
        ) from None
    except RecursionError:
        raise IngestError(
            400, "TooDeep", f"the JSON nests more than {max_depth} levels deep"
        ) from None
    except ValueError as exc:
        raise IngestError(400, "MalformedJSON", f"the body is not valid JSON: {exc}") from None
    # Only a body with that many brackets can nest that deep: most never pay for the walk.
    if raw.count(b"[") + raw.count(b"{") > max_depth and _deeper_than(value, max_depth):
        raise IngestError(400, "TooDeep", f"the JSON nests more than {max_depth} levels deep")
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise IngestError(
                400,
                "InvalidUnicode",
                "the body has a lone surrogate escape (\\ud800-\\udfff without its pair),"
                " which is not a Unicode character",
            ) from None
    return value


def parse_object(raw: bytes, example: str, max_depth: int = MAX_DATA_DEPTH + 1) -> dict[str, Any]:
    """A strict JSON object (see parse_json); `example` shows the expected shape."""
    value = parse_json(raw, max_depth)
    if not isinstance(value, dict):
        raise IngestError(400, "MalformedRequest", f"the body must be a JSON object {example}")
    return value


def parse_body(raw: bytes) -> Submitted:
    body = parse_object(raw, '{"type": "invoice.paid", "data": {...}}')
    event_type = body.get("type")
    if (
        not isinstance(event_type, str)
        or len(event_type) > MAX_TYPE_LENGTH
        or not EVENT_TYPE.fullmatch(event_type)
    ):
        raise IngestError(
            400,
            "InvalidEventType",
            '"type" must be a dotted name of lower-case letters, digits, "-" and "_",'
            f' at most {MAX_TYPE_LENGTH} characters, such as "invoice.paid"',
        )
    key = body.get("id")
    if key is not None and (
        not isinstance(key, str) or not key or len(key) > MAX_ID_LENGTH or not key.isprintable()
    ):
        raise IngestError(
            400,
            "InvalidEventId",
            f'"id" must be a string of 1 to {MAX_ID_LENGTH} printable characters'
            " (no control characters)",
        )
    unknown = sorted(set(body) - {"type", "id", "data"})
    if unknown:
        raise IngestError(
            400,
            "MalformedEvent",
            f"unknown fields: {', '.join(map(repr, unknown))} (allowed: type, id, data)",
        )
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise IngestError(400, "MalformedEvent", '"data" must be a JSON object')
    return Submitted(type=event_type, idempotency_key=key, data=data)


def check_catalog(app: AppConfig, submitted: Submitted) -> None:
    if not app.catalog:
        return
    if submitted.type not in app.catalog:
        declared = ", ".join(sorted(app.catalog))
        raise IngestError(
            422,
            "UnknownEventType",
            f"event type {submitted.type!r} is not in the catalog of WebhookApp {app.name}"
            f" (declared: {declared})",
        )
    validator = app.catalog[submitted.type]
    if validator is None:
        return
    errors = sorted(validator.iter_errors(submitted.data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise IngestError(
            422,
            "SchemaMismatch",
            f"data does not match the schema of {submitted.type}:"
            f" at {where}: {first.message}{more}",
        )


def check_event(app: AppConfig, raw: bytes) -> Submitted:
    """One event's bytes as the single and the batch emit routes both read them: strict
    JSON, the event's fields, then the app's catalog. IngestError with a reason otherwise."""
    submitted = parse_body(raw)
    check_catalog(app, submitted)
    return submitted


def _timestamp(now: float) -> str:
    return (
        datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def payload(event_id: str, submitted: Submitted, now: float) -> str:
    """The body every delivery of the event carries, in the Standard Webhooks shape."""
    envelope = {
        "id": event_id,
        "type": submitted.type,
        "timestamp": _timestamp(now),
        "data": submitted.data,
    }
    try:
        # orjson writes the same compact UTF-8 JSON several times faster (ingest hot path).
        return orjson.dumps(envelope).decode()
    except TypeError:  # an integer beyond 64 bits: the standard library keeps it exact
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)


def _no_report(endpoint: EndpointConfig, verdict: Verdict) -> None:
    pass


def build(
    namespace: str,
    app: AppConfig,
    submitted: Submitted,
    subscribers: list[EndpointConfig],
    holds: Callable[[EndpointConfig], bool],
    now: float,
    filtered: Callable[[EndpointConfig, Verdict], None] = _no_report,
) -> tuple[NewEvent, list[NewDelivery]]:
    """The event and one delivery per subscribed endpoint whose filter (if it has one)
    passes the event; endpoints that `holds` says are paused or disabled get theirs held,
    to be delivered when they are active again. `filtered` hears of each endpoint left
    out because of its filter itself (it failed on this event, answered no bool, or does
    not compile), to count it."""
    event_id = ids.event_id(now)
    event = NewEvent(
        id=event_id,
        namespace=namespace,
        app=app.name,
        type=submitted.type,
        payload=payload(event_id, submitted, now),
        idempotency_key=submitted.idempotency_key,
        created_at=now,
        traceparent=submitted.traceparent,
    )
    bindings: Bindings | None = None
    deliveries = []
    for endpoint in subscribers:
        if endpoint.filter is not None:
            if bindings is None:  # converted once, for every filter of this event
                bindings = Bindings(submitted.type, event_id, _timestamp(now), submitted.data)
            passed = endpoint.filter.evaluate(bindings)
            if passed is not True:
                if passed is not False:
                    filtered(endpoint, passed)
                continue
        held = holds(endpoint)
        deliveries.append(
            NewDelivery(
                id=ids.delivery_id(now),
                endpoint=endpoint.name,
                status=DeliveryStatus.HELD if held else DeliveryStatus.PENDING,
                next_attempt_at=now,
            )
        )
    return event, deliveries


# -- batches ------------------------------------------------------------------------------

# A batch's whole body. 100 events at the single route's limit (256 KiB) would be 25 MiB,
# all held in memory while it is read and checked: more than a replica's memory limit
# allows for a few producers at once. Events are small in practice (a few KiB), so a
# batch may reach 4 MiB, and never less than one event at the single route's limit.
MAX_BATCH_BYTES = 4 * 1024 * 1024
BATCH_EXAMPLE = '{"events": [{"type": "invoice.paid", "data": {...}}, ...]}'

# Finding where each event of a batch begins and ends is a step apart from reading it,
# so that an event the strict parser refuses (a duplicate key, bytes that are not UTF-8,
# too deep) fails alone with the single route's reason. The body is decoded with
# surrogateescape: bytes that are not UTF-8 stay in place and go back into the event's
# bytes unchanged, for the strict parser to name.
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_LENIENT = json.JSONDecoder()  # no hooks: C speed, only to find where a value ends
# A closed string, a run of one bracket, or a quote that opens a string never closed.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|\[+|\]+|\{+|\}+|"', re.DOTALL)
_SCALAR = re.compile(r'[^\s,\[\]{}"]+')
_CLOSING = {"{": "}", "[": "]"}
# About 5 µs each: a batch of broken events is refused whole past about 50 ms of scanning.
MAX_SCAN_STEPS = 10_000


def batch_limit(max_event: int) -> int:
    """The largest batch body for events of at most `max_event` bytes each."""
    return max(max_event, min(MAX_BATCH_EVENTS * max_event, MAX_BATCH_BYTES))


def _not_json(what: str, pos: int) -> IngestError:
    return IngestError(400, "MalformedJSON", f"the body is not valid JSON: {what} (char {pos})")


def _close(closers: list[str], counts: list[int], run: str, end: int) -> int | None:
    """Close what is open with `run` (one closing bracket, repeated), which ends at `end`:
    how much of the run is left once nothing is open any more, None while something is."""
    left = len(run)
    while left:
        if not closers or closers[-1] != run[0]:
            raise _not_json(f"{run[0]!r} does not close what is open", end - left)
        taken = min(left, counts[-1])
        left -= taken
        counts[-1] -= taken
        if not counts[-1]:
            closers.pop()
            counts.pop()
        if not closers:
            return left
    return None


class _BatchReader:
    """The structure of {"events": [...]} around the events, read by hand from `text`."""

    def __init__(self, text: str, most: int, scan_steps: int) -> None:
        self.text = text
        self.most = most
        # Strings and runs of brackets the slow scanner (a Python step each) may still
        # read in this batch: broken events cost at most a few tens of milliseconds.
        self.scan_steps = scan_steps

    def skip(self, pos: int) -> int:
        match = _WHITESPACE.match(self.text, pos)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    def expect(self, pos: int, char: str, what: str) -> int:
        """The position after `char` at `pos`, and the whitespace after it."""
        if not self.text.startswith(char, pos):
            raise _not_json(f"expected {char!r} {what}", pos)
        return self.skip(pos + 1)

    def value_end(self, pos: int) -> int:
        try:
            return int(_LENIENT.raw_decode(self.text, pos)[1])
        except (ValueError, RecursionError):
            return self._scan_end(pos)

    def _scan_end(self, pos: int) -> int:
        """Where the value at `pos` ends, by its brackets and quotes alone: for a value the
        lenient decoder cannot read (nested past its recursion limit, or broken inside,
        which the strict parser then names)."""
        text = self.text
        first = text[pos : pos + 1]
        if first in _CLOSING:
            return self._container_end(pos)
        token = (_TOKEN if first == '"' else _SCALAR).match(text, pos)
        if token is None:
            raise _not_json("expected a value", pos)
        if token.group() == '"':
            raise _not_json("a string is not closed", pos)
        return token.end()

    def _container_end(self, pos: int) -> int:
        # What is open, as runs: 100,000 "[" in a row are one step, not 100,000.
        closers: list[str] = []
        counts: list[int] = []
        for token in _TOKEN.finditer(self.text, pos):
            self.scan_steps -= 1
            if self.scan_steps < 0:
                raise _not_json(
                    "an event that is broken or nested too deep is too long to skip", pos
                )
            run = token.group()
            if run == '"':
                raise _not_json("a string is not closed", token.start())
            if run[0] == '"':
                continue
            if run[0] not in _CLOSING:
                left = _close(closers, counts, run, token.end())
                if left is not None:  # the rest of the run closes what encloses the value
                    return token.end() - left
            elif closers and closers[-1] == _CLOSING[run[0]]:
                counts[-1] += len(run)
            else:
                closers.append(_CLOSING[run[0]])
                counts.append(len(run))
        raise _not_json(f"{self.text[pos]!r} is not closed", pos)

    def events(self, pos: int) -> tuple[list[tuple[int, int]], int]:
        """The spans of the events of the list at `pos`, and the position after it."""
        if not self.text.startswith("[", pos):
            raise IngestError(400, "MalformedRequest", f'"events" must be a list: {BATCH_EXAMPLE}')
        pos = self.skip(pos + 1)
        spans: list[tuple[int, int]] = []
        while not self.text.startswith("]", pos):
            if spans:
                pos = self.expect(pos, ",", f"or ']' after event {len(spans) - 1}")
            end = self.value_end(pos)
            spans.append((pos, end))
            if len(spans) > self.most:
                raise IngestError(
                    400, "TooManyEvents", f"send at most {self.most} events in one batch"
                )
            pos = self.skip(end)
        return spans, pos + 1

    def key(self, pos: int) -> tuple[str, int]:
        """The key at `pos`, and the position of its value."""
        if not self.text.startswith('"', pos):
            raise _not_json("expected a key in double quotes", pos)
        try:
            key, end = _LENIENT.raw_decode(self.text, pos)
        except ValueError:
            raise _not_json("a key is not a valid string", pos) from None
        return str(key), self.expect(self.skip(end), ":", "after a key")

    def body(self, pos: int) -> list[tuple[int, int]]:
        """The spans of the events of the object at `pos`, which must be all there is."""
        pos = self.skip(pos + 1)
        spans: list[tuple[int, int]] | None = None
        unknown: list[str] = []
        while not self.text.startswith("}", pos):
            if spans is not None or unknown:
                pos = self.expect(pos, ",", "or '}' after a value")
            key, pos = self.key(pos)
            if key != "events":
                unknown.append(key[:64])
                pos = self.skip(self.value_end(pos))
            elif spans is not None:
                raise IngestError(400, "DuplicateKey", "the key 'events' appears twice")
            else:
                spans, pos = self.events(pos)
                pos = self.skip(pos)
        if self.skip(pos + 1) != len(self.text):
            raise _not_json("extra data after the object", self.skip(pos + 1))
        if unknown:
            fields = ", ".join(map(repr, unknown[:5]))
            raise IngestError(
                400, "MalformedRequest", f"unknown fields: {fields} (allowed: events)"
            )
        if spans is None:
            raise IngestError(400, "MalformedRequest", f"send the events as {BATCH_EXAMPLE}")
        if not spans:
            raise IngestError(400, "EmptyBatch", f"send 1 to {self.most} events: {BATCH_EXAMPLE}")
        return spans


def split_batch(
    raw: bytes, most: int = MAX_BATCH_EVENTS, scan_steps: int = MAX_SCAN_STEPS
) -> list[bytes]:
    """The bytes of each event of a batch body {"events": [...]}, in order. The batch as a
    whole is refused with an IngestError (nothing is then stored): a body that is not a
    JSON object, no "events" list or an empty one, more than `most` events, other fields,
    and JSON broken such that the events cannot be told apart (or only in more than
    `scan_steps` steps)."""
    text = raw.decode("utf-8", "surrogateescape")
    reader = _BatchReader(text, most, scan_steps)
    pos = reader.skip(0)
    if not text.startswith("{", pos):
        # Whatever the single route answers for this body: InvalidUTF8, MalformedJSON...
        parse_object(raw, BATCH_EXAMPLE)
        raise _not_json("expected an object", pos)  # a valid JSON object begins with {
    return [text[a:b].encode("utf-8", "surrogateescape") for a, b in reader.body(pos)]


def check_batch(
    app: AppConfig, raw: bytes, max_event: int, most: int = MAX_BATCH_EVENTS
) -> list[Submitted | IngestError]:
    """Each event of a batch checked as the single route checks one (`check_event`), with
    its own answer in its place: one bad event never fails the others. A batch that cannot
    be read as a whole raises (see split_batch)."""
    checked: list[Submitted | IngestError] = []
    for event in split_batch(raw, most):
        try:
            if len(event) > max_event:
                raise IngestError(
                    413, "TooLarge", f"the event is {len(event)} bytes; the limit is {max_event}"
                )
            checked.append(check_event(app, event))
        except IngestError as exc:
            checked.append(exc)
    return checked
