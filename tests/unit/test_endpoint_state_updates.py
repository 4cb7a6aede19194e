"""Under load a batch of results becomes few endpoint-state writes, with the same end state."""

from __future__ import annotations

from webhook_operator import ids
from webhook_operator.store.base import AttemptResult, DeliveryStatus, endpoint_state_updates


def result(endpoint: str, success: bool, at: float) -> AttemptResult:
    return AttemptResult(
        delivery_id=f"d-{endpoint}-{at}",
        owner="me",
        namespace="ns",
        endpoint=endpoint,
        attempt=1,
        started_at=at,
        duration_ms=1.0,
        http_status=204 if success else 500,
        error=None if success else "500 Internal Server Error",
        response_snippet=None,
        success=success,
        status=DeliveryStatus.DELIVERED if success else DeliveryStatus.FAILED,
        next_attempt_at=None if success else at + 5,
    )


def test_many_successes_of_one_endpoint_become_its_last_one() -> None:
    batch = [result("a", True, t) for t in range(200)]
    assert endpoint_state_updates(batch) == [batch[-1]]


def test_each_endpoint_keeps_its_own_latest_success() -> None:
    batch = [result(ep, True, t) for t in range(5) for ep in ("a", "b")]
    kept = endpoint_state_updates(batch)
    assert {(r.endpoint, r.started_at) for r in kept} == {("a", 4), ("b", 4)}


def test_failures_are_all_kept_because_each_adds_to_the_count() -> None:
    batch = [result("a", False, 1), result("a", False, 2), result("a", True, 3)]
    assert endpoint_state_updates(batch) == batch


def test_a_success_before_a_failure_is_superseded_only_by_a_later_success() -> None:
    batch = [
        result("a", True, 1),
        result("a", True, 2),
        result("a", False, 3),
        result("a", True, 4),
        result("a", True, 5),
    ]
    assert [r.started_at for r in endpoint_state_updates(batch)] == [2, 3, 5]


def test_ids_stay_unique_and_ordered_by_time() -> None:
    made = [ids.delivery_id(1_700_000_000 + n * 0.002) for n in range(2000)]
    assert len(set(made)) == len(made)
    assert made == sorted(made)
    assert all(len(i) == len("dlv_") + 26 for i in made)
