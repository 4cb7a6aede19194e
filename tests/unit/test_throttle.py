"""The per-endpoint token bucket: slot spacing, bursts, 429 slow-down and recovery."""

from __future__ import annotations

import pytest

from webhook_operator.throttle import SLOW_DOWN_COOLDOWN, TokenBucket


def delays(bucket: TokenBucket, now: float, count: int) -> list[float]:
    return [bucket.reserve(now) for _ in range(count)]


# --- reservations -------------------------------------------------------------------------


def test_successive_reservations_get_successive_slots() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    assert delays(bucket, 0.0, 10) == pytest.approx([i / 10 for i in range(10)])


def test_burst_is_free_then_spacing_resumes() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    assert delays(bucket, 0.0, 6) == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])


def test_spacing_when_callers_come_at_their_slot() -> None:
    bucket = TokenBucket(rate=2, burst=1)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.1) == pytest.approx(0.4)
    assert bucket.reserve(1.0) == pytest.approx(0.0)
    assert bucket.reserve(1.5) == pytest.approx(0.0)
    assert bucket.reserve(1.5) == pytest.approx(0.5)


def test_idle_time_refills_up_to_burst_only() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    delays(bucket, 0.0, 3)
    # A long quiet spell earns 3 tokens, not 1000.
    assert delays(bucket, 100.0, 5) == pytest.approx([0, 0, 0, 0.1, 0.2])


def test_partial_refill() -> None:
    bucket = TokenBucket(rate=1, burst=2)
    delays(bucket, 0.0, 2)
    assert bucket.reserve(0.5) == pytest.approx(0.5)
    assert bucket.reserve(0.5) == pytest.approx(1.5)


def test_a_new_bucket_starts_full_whenever_first_used() -> None:
    bucket = TokenBucket(rate=1, burst=4)
    assert delays(bucket, 1_700_000_000.0, 5) == pytest.approx([0, 0, 0, 0, 1])


def test_fractional_rate() -> None:
    bucket = TokenBucket(rate=0.5, burst=1)
    assert delays(bucket, 0.0, 3) == pytest.approx([0, 2, 4])


def test_clock_going_back_earns_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    assert bucket.reserve(5.0) == 0.0
    # Earlier than the last reservation: the slot is still 5.1, i.e. 1.1 s away.
    assert bucket.reserve(4.0) == pytest.approx(1.1)


def test_defaults_and_properties() -> None:
    bucket = TokenBucket(rate=5)
    assert bucket.rate == 5.0
    assert bucket.burst == 1.0
    assert bucket.current_rate == 5.0
    assert not bucket.throttled


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(0, 1), (-1, 1), (float("inf"), 1), (float("nan"), 1), (1, 0), (1, 0.5), (1, float("nan"))],
)
def test_invalid_rate_or_burst(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate=rate, burst=burst)


@pytest.mark.parametrize("interval", [0.0, -1.0, float("inf")])
def test_invalid_recovery_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="recovery_interval"):
        TokenBucket(rate=1, recovery_interval=interval)


# --- slow_down ----------------------------------------------------------------------------


def test_slow_down_halves_the_rate_and_spacing_widens() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    bucket.reserve(0.0)
    assert bucket.slow_down(0.0) == 5.0
    assert bucket.current_rate == 5.0
    assert bucket.rate == 10.0  # the configured rate is unchanged
    assert bucket.throttled
    # The slot booked at the old rate (0.1) is paid back at the new one: 0.2, then 0.2 apart.
    assert delays(bucket, 0.0, 3) == pytest.approx([0.2, 0.4, 0.6])


def test_slow_down_drops_the_saved_burst() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    bucket.slow_down(0.0)
    assert delays(bucket, 0.0, 3) == pytest.approx([0.2, 0.4, 0.6])


def test_slow_down_keeps_existing_debt() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    delays(bucket, 0.0, 4)  # booked up to 0.3; balance -3
    bucket.slow_down(0.0)
    assert bucket.reserve(0.0) == pytest.approx(4 / 5)


def test_custom_factor() -> None:
    bucket = TokenBucket(rate=8, burst=1)
    assert bucket.slow_down(0.0, factor=0.25) == 2.0


def test_repeated_slow_downs_within_the_cooldown_count_once() -> None:
    bucket = TokenBucket(rate=16, burst=1)
    assert bucket.slow_down(0.0) == 8.0
    assert bucket.slow_down(0.1) == 8.0
    assert bucket.slow_down(SLOW_DOWN_COOLDOWN / 2) == 8.0


def test_slow_downs_after_the_cooldown_compound() -> None:
    bucket = TokenBucket(rate=16, burst=1)
    assert bucket.slow_down(0.0) == 8.0
    assert bucket.slow_down(SLOW_DOWN_COOLDOWN) == 4.0
    assert bucket.slow_down(2 * SLOW_DOWN_COOLDOWN) == 2.0


def test_slow_down_stops_at_min_rate() -> None:
    bucket = TokenBucket(rate=4, burst=1)
    rates = [bucket.slow_down(float(t)) for t in range(6)]
    assert rates == [2.0, 1.0, 0.5, 0.5, 0.5, 0.5]
    assert bucket.slow_down(10.0, min_rate=0.1) == 0.25


def test_min_rate_never_raises_a_low_configured_rate() -> None:
    bucket = TokenBucket(rate=0.2, burst=1)
    assert bucket.slow_down(0.0, min_rate=0.5) == 0.2


@pytest.mark.parametrize(("factor", "min_rate"), [(0.0, 0.5), (1.5, 0.5), (0.5, 0.0)])
def test_invalid_slow_down(factor: float, min_rate: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate=1).slow_down(0.0, factor=factor, min_rate=min_rate)


# --- recovery -----------------------------------------------------------------------------


def test_rate_doubles_back_every_quiet_interval() -> None:
    bucket = TokenBucket(rate=16, burst=1)
    for t in range(4):
        bucket.slow_down(float(t))  # 8, 4, 2, 1
    assert bucket.current_rate == 1.0
    assert bucket.recover(12.9) == 1.0  # quiet since t=3: not 10 s yet
    assert bucket.recover(13.0) == 2.0
    assert bucket.recover(22.9) == 2.0
    assert bucket.recover(23.0) == 4.0
    assert bucket.recover(43.0) == 16.0
    assert not bucket.throttled


def test_recovery_never_exceeds_the_configured_rate() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    bucket.slow_down(0.0)  # 5
    assert bucket.recover(10.0) == 10.0
    assert bucket.recover(1_000_000.0) == 10.0
    assert not bucket.throttled


def test_long_quiet_spell_recovers_in_one_go() -> None:
    bucket = TokenBucket(rate=1000, burst=1)
    for t in range(12):
        bucket.slow_down(float(t))
    assert bucket.current_rate == 0.5
    assert bucket.recover(1e9) == 1000.0


def test_slow_down_applies_due_recovery_first() -> None:
    bucket = TokenBucket(rate=16, burst=1)
    bucket.slow_down(0.0)
    bucket.slow_down(1.0)  # 4, quiet from 1
    assert bucket.slow_down(21.0) == 8.0  # recovered to 16 by then, halved once


def test_a_new_429_restarts_the_quiet_period() -> None:
    bucket = TokenBucket(rate=16, burst=1)
    bucket.slow_down(0.0)  # 8
    bucket.slow_down(9.0)  # 4, quiet again from 9
    assert bucket.recover(18.0) == 4.0
    assert bucket.recover(19.0) == 8.0


def test_partial_progress_toward_the_next_doubling_is_kept() -> None:
    bucket = TokenBucket(rate=16, burst=1)
    bucket.slow_down(0.0)
    bucket.slow_down(1.0)  # 4, quiet from 1
    assert bucket.recover(15.0) == 8.0  # one step, at 11
    assert bucket.recover(21.0) == 16.0  # the next at 21, not 25


def test_reserve_recovers_by_itself() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    bucket.slow_down(0.0)  # 5/s
    assert bucket.reserve(10.0) == 0.0  # back to 10/s
    assert bucket.current_rate == 10.0
    assert bucket.reserve(10.0) == pytest.approx(0.1)


def test_custom_recovery_interval() -> None:
    bucket = TokenBucket(rate=4, burst=1, recovery_interval=1.0)
    bucket.slow_down(0.0)
    assert bucket.recover(1.0) == 4.0


def test_recover_without_throttling_is_a_no_op() -> None:
    bucket = TokenBucket(rate=3, burst=2)
    assert bucket.recover(100.0) == 3.0
    assert delays(bucket, 100.0, 3) == pytest.approx([0, 0, 1 / 3])


# --- reconfigure --------------------------------------------------------------------------


def test_reconfigure_changes_rate_and_burst() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    bucket.reserve(0.0)
    bucket.reconfigure(rate=10, burst=3)
    assert (bucket.rate, bucket.burst, bucket.current_rate) == (10.0, 3.0, 10.0)
    # The debt left at 0 is now repaid at 10/s.
    assert delays(bucket, 0.0, 2) == pytest.approx([0.1, 0.2])
    # And the larger burst fills up when idle.
    assert delays(bucket, 100.0, 4) == pytest.approx([0, 0, 0, 0.1])


def test_reconfigure_lowering_burst_drops_extra_tokens() -> None:
    bucket = TokenBucket(rate=1, burst=5)
    bucket.reserve(0.0)  # 4 tokens left
    bucket.reconfigure(rate=1, burst=2)
    assert delays(bucket, 0.0, 3) == pytest.approx([0, 0, 1])


def test_reconfigure_before_first_use_starts_full_at_the_new_burst() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    bucket.reconfigure(rate=1, burst=3)
    assert delays(bucket, 0.0, 4) == pytest.approx([0, 0, 0, 1])


def test_reconfigure_with_the_same_values_changes_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    bucket.reserve(0.0)
    bucket.slow_down(0.0)
    bucket.reconfigure(rate=10, burst=1)
    assert bucket.current_rate == 5.0
    assert bucket.throttled
    assert bucket.reserve(0.0) == pytest.approx(0.2)


def test_reconfigure_keeps_a_throttled_rate_and_recovers_toward_the_new_one() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    bucket.slow_down(0.0)  # 5
    bucket.reconfigure(rate=40, burst=1)
    assert bucket.current_rate == 5.0
    assert bucket.recover(10.0) == 10.0
    assert bucket.recover(30.0) == 40.0
    assert not bucket.throttled


def test_reconfigure_below_the_throttled_rate_ends_throttling() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    bucket.slow_down(0.0)  # 5
    bucket.reconfigure(rate=2, burst=1)
    assert bucket.current_rate == 2.0
    assert not bucket.throttled


def test_reconfigure_unthrottled_follows_the_spec() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    bucket.reconfigure(rate=3, burst=1)
    assert bucket.current_rate == 3.0


def test_reconfigure_validates() -> None:
    bucket = TokenBucket(rate=1)
    with pytest.raises(ValueError, match="rate must be"):
        bucket.reconfigure(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst must be"):
        bucket.reconfigure(rate=1, burst=0)
    assert (bucket.rate, bucket.burst) == (1.0, 1.0)


def test_a_cancelled_reservation_gives_its_slot_to_the_next_one() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(0.1)
    bucket.cancel()  # that delivery went back to the store instead
    assert bucket.reserve(0.0) == pytest.approx(0.1)


def test_slots_are_booked_only_just_ahead() -> None:
    bucket = TokenBucket(rate=10, burst=1)
    assert bucket.reserve_within(0.0, 0.02) == 0.0
    assert bucket.reserve_within(0.0, 0.02) is None  # 0.1 s away: not booked
    assert bucket.wait_time(0.0) == pytest.approx(0.1)
    assert bucket.reserve_within(0.09, 0.02) == pytest.approx(0.01)
    # Woken late (0.5 s): one slot is there, not four; the missed ones are gone.
    assert bucket.reserve_within(0.5, 0.02) == 0.0
    assert bucket.reserve_within(0.5, 0.02) is None
