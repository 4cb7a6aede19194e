from datetime import UTC, datetime, timedelta

from webhook_operator import rotation

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(hours=24)
STATE = rotation.SecretState(current="whsec_a", issued_at=T0, handled_token="v1")


def test_new_annotation_value_rotates_and_same_value_does_not() -> None:
    policy = rotation.Policy(grace=DAY)
    assert rotation.plan(STATE, "v2", policy, T0).rotate
    assert not rotation.plan(STATE, "v1", policy, T0).rotate
    assert not rotation.plan(STATE, None, policy, T0).rotate


def test_rotation_keeps_previous_until_grace_ends() -> None:
    policy = rotation.Policy(grace=DAY)
    plan = rotation.plan(STATE, "v2", policy, T0)
    assert plan.next_check == T0 + DAY
    after = rotation.rotated(STATE, "whsec_b", "v2", policy, T0)
    assert (after.current, after.previous, after.handled_token) == ("whsec_b", "whsec_a", "v2")
    assert after.previous_expires_at == T0 + DAY
    assert not rotation.plan(after, "v2", policy, T0 + DAY / 2).prune_previous
    assert rotation.plan(after, "v2", policy, T0 + DAY).prune_previous
    assert rotation.pruned(after).previous is None


def test_zero_grace_drops_the_old_secret_at_once() -> None:
    policy = rotation.Policy(grace=timedelta(0))
    after = rotation.rotated(STATE, "whsec_b", "v2", policy, T0)
    assert after.previous is None
    assert after.previous_expires_at is None


def test_scheduled_rotation() -> None:
    policy = rotation.Policy(grace=DAY, interval=timedelta(days=30))
    assert rotation.plan(STATE, "v1", policy, T0).next_check == T0 + timedelta(days=30)
    due = rotation.plan(STATE, "v1", policy, T0 + timedelta(days=30))
    assert due.rotate
    assert due.why == "scheduled"


def test_secret_round_trip() -> None:
    after = rotation.rotated(STATE, "whsec_b", "v2", rotation.Policy(grace=DAY), T0)
    data, annotations = rotation.to_secret(after)
    assert data == {"secret": "whsec_b", "previous": "whsec_a"}
    assert annotations[rotation.HANDLED_TOKEN] == "v2"
    assert rotation.from_secret(data, annotations, T0) == after
    assert rotation.from_secret({}, {}, T0) is None
