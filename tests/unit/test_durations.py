"""Go-style durations: what parses, what does not, and formatting back."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from webhook_operator.durations import CRD_PATTERN, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("1m250ms", timedelta(minutes=1, milliseconds=250)),
        ("0s", timedelta(0)),
        ("0.5ms", timedelta(microseconds=500)),
        ("1.1h", timedelta(hours=1, minutes=6)),
        ("90s", timedelta(minutes=1, seconds=30)),
        ("48h", timedelta(days=2)),
        ("1h1h", timedelta(hours=2)),
        ("2h3m4s5ms", timedelta(hours=2, minutes=3, seconds=4, milliseconds=5)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "30",
        "-5s",
        "+5s",
        "5 s",
        " 5s",
        "5s\n",
        "5d",
        "5us",
        "5S",
        ".5s",
        "5.s",
        "1e3s",
        "h",
        "1h-30m",
        "99999999999999999999h",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration such as 30s, 5m or 2h"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(hours=1, seconds=5), "1h5s"),
        (timedelta(minutes=1, seconds=30), "1m30s"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(microseconds=500), "0.5ms"),
        (timedelta(seconds=1, milliseconds=500), "1.5s"),
        (timedelta(hours=1, milliseconds=250), "1h250ms"),
        (timedelta(days=2), "48h"),
        (timedelta(seconds=10, microseconds=1), "10.000001s"),
    ],
)
def test_format(td: timedelta, expected: str) -> None:
    assert format_duration(td) == expected


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))


@pytest.mark.parametrize(
    "td",
    [
        timedelta(0),
        timedelta(microseconds=1),
        timedelta(milliseconds=999, microseconds=999),
        timedelta(seconds=59, microseconds=10),
        timedelta(hours=25, minutes=59, seconds=59, microseconds=999_999),
        timedelta(days=400, seconds=1),
    ],
)
def test_format_round_trips_and_matches_the_crd_pattern(td: timedelta) -> None:
    text = format_duration(td)
    assert re.match(CRD_PATTERN, text)
    assert parse_duration(text) == td


@pytest.mark.parametrize("text", ["30s", "5m", "1h30m", "250ms", "1.5s", "2h5s"])
def test_canonical_text_round_trips(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    ("text", "canonical"), [("1.5h", "1h30m"), ("90s", "1m30s"), ("60m", "1h")]
)
def test_non_canonical_text_normalises(text: str, canonical: str) -> None:
    assert format_duration(parse_duration(text)) == canonical
