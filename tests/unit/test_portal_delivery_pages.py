"""What the delivery pages decide before they call the service layer: which statuses and
page the address asks for (and what to say when it asks wrongly), the Older and Newest
links that keep the filter, the payload indented for reading, and the replay window read
from datetime-local fields as UTC. No server, no browser: the pages' own logic only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from multidict import MultiDict, MultiDictProxy

from webhook_operator.portal.web.delivery_pages import (
    PAGE_SIZE,
    ListQuery,
    list_query,
    local_input,
    pretty_payload,
    replay_form,
    resent_from,
)

CURSOR = "dlv_01JD0000000000000000000000"


def query(*pairs: tuple[str, str]) -> MultiDictProxy[str]:
    return MultiDictProxy(MultiDict(pairs))


def test_the_newest_page_of_everything_by_default() -> None:
    asked = list_query(query())
    assert asked == ListQuery()
    assert asked.params == [("limit", str(PAGE_SIZE))]
    assert asked.link() == "?"


def test_statuses_repeated_or_comma_separated_once_each() -> None:
    asked = list_query(query(("status", "failed"), ("status", "exhausted,failed")))
    assert asked.statuses == ("failed", "exhausted")
    assert asked.error is None
    assert ("status", "failed,exhausted") in asked.params


def test_the_older_link_keeps_the_filter() -> None:
    asked = list_query(query(("status", "failed"), ("cursor", CURSOR)))
    assert asked.cursor == CURSOR
    assert asked.params == [("limit", "50"), ("cursor", CURSOR), ("status", "failed")]
    assert asked.link("dlv_next") == "?status=failed&cursor=dlv_next"
    assert asked.link() == "?status=failed"


@pytest.mark.parametrize(
    ("pairs", "said"),
    [
        ((("status", "lost"),), "unknown status 'lost'"),
        ((("status", "failed,"),), "unknown status ''"),
        ((("cursor", "x"),), "That page link is not valid"),
        ((("cursor", CURSOR + "'"),), "That page link is not valid"),
    ],
)
def test_a_bad_filter_or_cursor_is_an_error_to_show(
    pairs: tuple[tuple[str, str], ...], said: str
) -> None:
    asked = list_query(query(*pairs))
    assert asked.error is not None
    assert said in asked.error


def test_the_payload_is_indented_when_it_is_json_and_left_alone_when_not() -> None:
    assert (
        pretty_payload('{"data":{"ref":"spät ☃"}}') == '{\n  "data": {\n    "ref": "spät ☃"\n  }\n}'
    )
    assert pretty_payload("not json {") == "not json {"


def test_the_resend_notice_names_only_a_delivery_id() -> None:
    assert resent_from({"resent": CURSOR}) == CURSOR
    assert resent_from({"resent": "<script>"}) is None
    assert resent_from({}) is None


def form_of(fields: dict[str, str], statuses: tuple[str, ...] = ("failed", "exhausted")) -> Any:
    """A replay form as the browser posts it: its fields and one `statuses` per ticked box."""
    return query(*fields.items(), *(("statuses", s) for s in statuses))


def test_the_replay_window_is_read_as_utc() -> None:
    sent = replay_form(form_of({"since": "2026-11-25T10:00", "until": "2026-11-25T12:30:15"}))
    assert sent.error is None
    assert sent.window is not None
    assert sent.window.since == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert sent.window.until == datetime(2026, 11, 25, 12, 30, 15, tzinfo=UTC)
    body = sent.window.model_dump(mode="json", exclude_none=True)
    assert body == {
        "since": "2026-11-25T10:00:00Z",
        "until": "2026-11-25T12:30:15Z",
        "statuses": ["failed", "exhausted"],
    }


def test_the_ticked_statuses_are_replayed_and_none_ticked_is_said() -> None:
    sent = replay_form(form_of({"since": "2026-11-25T10:00"}, ("expired", "delivered")))
    assert sent.window is not None
    assert [s.value for s in sent.window.statuses or []] == ["expired"]  # only those offered
    assert sent.statuses == ("expired",)
    empty = replay_form(form_of({"since": "2026-11-25T10:00"}, ()))
    assert empty.window is None
    assert empty.error == "Choose which deliveries to replay"


def test_an_open_window_and_an_explicit_offset() -> None:
    sent = replay_form(form_of({"since": "2026-11-25T10:00+02:00", "until": ""}))
    assert sent.window is not None
    assert sent.window.since == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    assert sent.window.until is None


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({}, "Say since when to replay"),
        ({"since": "  "}, "Say since when to replay"),
        ({"since": "yesterday"}, "Since must be a date and time"),
        ({"since": "2026-11-25T10:00", "until": "soon"}, "Until must be a date and time"),
        ({"since": "2026-11-25T10:00", "until": "2026-11-25T10:00"}, "Until must be later"),
        ({"since": "2026-11-25T10:00", "until": "2026-11-24T10:00"}, "Until must be later"),
    ],
)
def test_a_bad_window_is_said_with_the_form_as_sent(form: dict[str, str], said: str) -> None:
    sent = replay_form(form_of(form))
    assert sent.window is None
    assert sent.error is not None
    assert said in sent.error
    assert sent.since == form.get("since", "").strip()


def test_the_default_since_is_a_datetime_local_value_in_utc() -> None:
    moment = datetime(2026, 11, 25, 12, 0, 59, tzinfo=timezone(timedelta(hours=-5)))
    assert local_input(moment) == "2026-11-25T17:00"
