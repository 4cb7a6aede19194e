from datetime import UTC, datetime, timedelta

from webhook_operator import conditions as cond

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


def test_unchanged_status_keeps_its_transition_time() -> None:
    old = [cond.make(cond.READY, False, cond.APP_NOT_FOUND, "missing", 1, T0)]
    new = [cond.make(cond.READY, False, cond.APP_NOT_FOUND, "still missing", 2, T1)]
    (merged,) = cond.merge(old, new)
    assert merged.last_transition_time == T0
    assert merged.message == "still missing"
    assert merged.observed_generation == 2


def test_changed_status_moves_the_transition_time() -> None:
    old = [cond.make(cond.READY, False, cond.APP_NOT_FOUND, "missing", 1, T0)]
    (merged,) = cond.merge(old, [cond.make(cond.READY, True, cond.RECONCILED, "", 1, T1)])
    assert merged.last_transition_time == T1


def test_ready_takes_the_first_failing_reason() -> None:
    parts = [
        cond.make(cond.APP_RESOLVED, True, "AppFound", "", 1, T0),
        cond.make(cond.SECRET_READY, False, cond.SECRET_NOT_FOUND, "create it", 1, T0),
    ]
    ready = cond.ready(parts, 1, T0)
    assert (ready.status, ready.reason, ready.message) == ("False", "SecretNotFound", "create it")
    assert cond.ready(parts[:1], 1, T0).status == "True"


def test_wire_format_and_parse_round_trip() -> None:
    wire = cond.to_wire([cond.make(cond.READY, True, cond.RECONCILED, "", 3, T0)])
    assert wire == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Reconciled",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 3,
        }
    ]
    assert cond.parse([*wire, {"garbage": True}])[0].reason == "Reconciled"
