"""Which changes of an endpoint's state page the operational endpoint, and only once."""

from __future__ import annotations

from webhook_operator.operational import OK, Announced, Notification, Snapshot, announced_by, step

T0, T1, T2 = "2026-12-01T10:00:00Z", "2026-12-01T10:05:00Z", "2026-12-01T10:09:00Z"


def failing(n: int, success: str | None = T0) -> Snapshot:
    return Snapshot(
        health="Failing",
        consecutive_failures=n,
        last_success_time=success,
        last_failure_time=T1,
        last_http_status=503,
        last_error="503 Service Unavailable",
    )


def disabled(at: str = T1, reason: str = "RetriesExhausted") -> Snapshot:
    return Snapshot(
        health="Disabled", consecutive_failures=8, disabled_reason=reason, disabled_at=at
    )


HEALTHY = Snapshot(health="Healthy", last_success_time=T2)


def walk(*states: Snapshot, failing_after: int = 5) -> list[Notification]:
    told, sent = OK, []
    for state in states:
        told, note = step("shop", "billing", "orders", told, state, failing_after)
        if note is not None:
            sent.append(note)
    return sent


def test_failing_is_told_once_when_the_streak_reaches_the_threshold() -> None:
    sent = walk(failing(1), failing(4), failing(5), failing(6), failing(9))
    assert [n.type for n in sent] == ["webhook-operator.endpoint.failing"]
    assert sent[0].data["consecutiveFailures"] == 5
    assert sent[0].data["endpoint"] == "orders"
    assert sent[0].data["lastHttpStatus"] == 503


def test_a_threshold_of_the_apps_choosing() -> None:
    assert walk(failing(2), failing(3)) == []
    assert [n.type for n in walk(failing(2), failing(3), failing_after=3)] == [
        "webhook-operator.endpoint.failing"
    ]


def test_failing_then_disabled_then_recovered() -> None:
    sent = walk(failing(5), disabled(), disabled(), HEALTHY, HEALTHY)
    assert [n.type.rsplit(".", 1)[1] for n in sent] == ["failing", "disabled", "recovered"]
    assert sent[1].data["reason"] == "RetriesExhausted"
    assert sent[2].data["was"] == "disabled"


def test_recovered_after_enable_even_through_failing_with_no_failures() -> None:
    # `kubectl webhooks enable` resets the count; the state reads Failing until a success.
    sent = walk(disabled(), failing(0), HEALTHY)
    assert [n.type.rsplit(".", 1)[1] for n in sent] == ["disabled", "recovered"]


def test_a_pause_and_a_few_failures_say_nothing() -> None:
    assert walk(disabled(reason="Paused"), failing(2), HEALTHY, Snapshot(health="Pending")) == []


def test_a_second_disable_after_an_enable_is_told_again() -> None:
    sent = walk(disabled(at=T1), failing(0), disabled(at=T2))
    assert [n.type.rsplit(".", 1)[1] for n in sent] == ["disabled", "disabled"]
    assert sent[0].idempotency_key != sent[1].idempotency_key


def test_the_same_change_seen_twice_has_the_same_key() -> None:
    # A restarted operator (or a new leader) may tell a change again: the delivery
    # service's idempotency stores it once.
    first, again = walk(failing(5)), walk(failing(6))
    assert first[0].idempotency_key == again[0].idempotency_key
    assert len(first[0].idempotency_key) <= 256


def test_a_restart_starts_from_what_the_status_implies_was_told() -> None:
    assert announced_by(disabled(at=T1)) == Announced("disabled", T1)
    assert announced_by(failing(7)) == Announced("failing", T0)
    assert announced_by(failing(2)) == OK
    assert announced_by(disabled(reason="Paused")) == OK
    told, note = step("shop", "billing", "orders", announced_by(disabled()), disabled(), 5)
    assert note is None
    told, note = step("shop", "billing", "orders", told, HEALTHY, 5)
    assert note is not None
    assert note.type == "webhook-operator.endpoint.recovered"
