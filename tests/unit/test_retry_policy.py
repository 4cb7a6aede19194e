"""Retry decisions: outcome classification, next attempt times, Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from webhook_operator.retry_policy import (
    DEFAULT_SCHEDULE,
    Outcome,
    RetryPolicy,
    classify,
    next_attempt,
    parse_retry_after,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
NO_JITTER = 0.5  # the middle of [0, 1]: delay exactly as scheduled


# --- the policy ---------------------------------------------------------------------------


def test_defaults() -> None:
    policy = RetryPolicy()
    assert DEFAULT_SCHEDULE == (60, 300, 1800, 7200)
    assert policy.schedule == DEFAULT_SCHEDULE
    assert policy.jitter == 0.1
    assert policy.retry_after_cap == 3600.0
    assert policy.max_attempts == 5


@pytest.mark.parametrize(("schedule", "attempts"), [((), 1), ((10.0,), 2), ((1.0, 2.0, 3.0), 4)])
def test_max_attempts(schedule: tuple[float, ...], attempts: int) -> None:
    assert RetryPolicy(schedule=schedule).max_attempts == attempts


@pytest.mark.parametrize(
    "kwargs",
    [
        {"schedule": (60.0, -1.0)},
        {"schedule": (float("inf"),)},
        {"schedule": (float("nan"),)},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"jitter": float("nan")},
        {"retry_after_cap": -1.0},
        {"retry_after_cap": float("nan")},
    ],
)
def test_invalid_policies(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --- classify -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_success(status: int) -> None:
    assert classify(status, None) is Outcome.SUCCESS


@pytest.mark.parametrize(
    "status",
    [100, 199, 300, 301, 302, 304, 307, 308, 400, 401, 403, 404, 408, 409, 413, 429, 499, 500,
     502, 503, 504, 599, 0, 600, 999],
)  # fmt: skip
def test_everything_else_but_410_is_retried(status: int) -> None:
    assert classify(status, None) is Outcome.RETRY


def test_410_is_gone() -> None:
    assert classify(410, None) is Outcome.GONE


@pytest.mark.parametrize(
    "error", ["timeout", "connection refused", "TLS certificate not trusted", ""]
)
def test_no_status_is_retried(error: str) -> None:
    assert classify(None, error) is Outcome.RETRY


def test_no_status_and_no_error_is_retried() -> None:
    assert classify(None, None) is Outcome.RETRY


def test_the_status_decides_when_there_is_one() -> None:
    # e.g. the body could not be read after the headers came: the request was delivered.
    assert classify(200, "timeout reading the response") is Outcome.SUCCESS
    assert classify(410, "connection reset") is Outcome.GONE
    assert classify(500, "connection reset") is Outcome.RETRY


def test_outcome_values() -> None:
    assert [o.value for o in Outcome] == ["success", "retry", "gone"]
    assert str(Outcome.GONE) == "gone"


# --- next_attempt -------------------------------------------------------------------------


@pytest.mark.parametrize(("attempt", "delay"), [(1, 60), (2, 300), (3, 1800), (4, 7200)])
def test_schedule_without_jitter(attempt: int, delay: float) -> None:
    assert next_attempt(RetryPolicy(), attempt, NOW, NO_JITTER, None) == NOW + delay


def test_exhausted_after_max_attempts() -> None:
    policy = RetryPolicy()
    assert next_attempt(policy, 5, NOW, NO_JITTER, None) is None
    assert next_attempt(policy, 6, NOW, NO_JITTER, None) is None
    assert next_attempt(policy, 5, NOW, NO_JITTER, 10.0) is None


def test_empty_schedule_never_retries() -> None:
    assert next_attempt(RetryPolicy(schedule=()), 1, NOW, NO_JITTER, None) is None


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.9), (0.25, 0.95), (0.75, 1.05), (1.0, 1.1)])
def test_jitter_bounds(rand: float, factor: float) -> None:
    got = next_attempt(RetryPolicy(), 2, NOW, rand, None)
    assert got == pytest.approx(NOW + 300 * factor)


def test_custom_jitter_and_schedule() -> None:
    policy = RetryPolicy(schedule=(10.0, 20.0), jitter=0.5)
    assert next_attempt(policy, 1, 0.0, 0.0, None) == pytest.approx(5.0)
    assert next_attempt(policy, 2, 0.0, 1.0, None) == pytest.approx(30.0)
    assert next_attempt(policy, 3, 0.0, 0.5, None) is None


def test_zero_jitter_ignores_rand() -> None:
    policy = RetryPolicy(jitter=0.0)
    assert next_attempt(policy, 1, NOW, 0.0, None) == NOW + 60
    assert next_attempt(policy, 1, NOW, 1.0, None) == NOW + 60


def test_retry_after_pushes_later() -> None:
    assert next_attempt(RetryPolicy(), 1, NOW, NO_JITTER, 120.0) == NOW + 120


def test_retry_after_never_pulls_earlier() -> None:
    assert next_attempt(RetryPolicy(), 2, NOW, NO_JITTER, 5.0) == NOW + 300
    assert next_attempt(RetryPolicy(), 2, NOW, NO_JITTER, 0.0) == NOW + 300
    assert next_attempt(RetryPolicy(), 2, NOW, NO_JITTER, -50.0) == NOW + 300


def test_retry_after_is_capped() -> None:
    assert next_attempt(RetryPolicy(), 1, NOW, NO_JITTER, 86400.0) == NOW + 3600
    policy = RetryPolicy(retry_after_cap=100.0)
    assert next_attempt(policy, 1, NOW, NO_JITTER, 86400.0) == NOW + 100
    assert next_attempt(policy, 1, NOW, NO_JITTER, float("inf")) == NOW + 100


def test_cap_does_not_shorten_the_schedule() -> None:
    # The cap bounds Retry-After only: the 2h step stays 2h.
    assert next_attempt(RetryPolicy(), 4, NOW, NO_JITTER, 86400.0) == NOW + 7200


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_are_one_based(attempt: int) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        next_attempt(RetryPolicy(), attempt, NOW, NO_JITTER, None)


@pytest.mark.parametrize("rand", [-0.01, 1.01, float("nan")])
def test_rand_must_be_a_unit_draw(rand: float) -> None:
    with pytest.raises(ValueError, match="rand"):
        next_attempt(RetryPolicy(), 1, NOW, rand, None)


# --- parse_retry_after --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 30 ", 30.0), ("007", 7.0), ("1.5", 1.5)],
)
def test_delta_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 01 Mar 2026 12:02:00 GMT",  # IMF-fixdate
        "Sunday, 01-Mar-26 12:02:00 GMT",  # obsolete RFC 850
        "Sun Mar  1 12:02:00 2026",  # obsolete asctime, no zone: GMT
        "Sun, 01 Mar 2026 13:02:00 +0100",  # not HTTP, but unambiguous
    ],
)
def test_http_date(value: str) -> None:
    assert parse_retry_after(value, NOW) == pytest.approx(120.0)


def test_http_date_now_is_zero() -> None:
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:00 GMT", NOW) == 0.0


def test_http_date_in_the_past_is_none() -> None:
    assert parse_retry_after("Sun, 01 Mar 2026 11:59:59 GMT", NOW) is None
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", NOW) is None


@pytest.mark.parametrize(
    "value",
    [None, "", " ", "-5", "-0.5", "+5", "1e3", "abc", "5s", "1,5", "inf", "nan", "0x10",
     "Sun, 99 Foo 2026 12:00:00 GMT", "tomorrow", "1.", ".5"],
)  # fmt: skip
def test_junk_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_parsed_value_feeds_next_attempt() -> None:
    retry_after = parse_retry_after("600", NOW)
    assert next_attempt(RetryPolicy(), 1, NOW, NO_JITTER, retry_after) == NOW + 600
