from datetime import UTC, datetime, timedelta

import pytest

from webhook_operator.api.v1alpha1 import Health
from webhook_operator.controller.reconcile_endpoint import delivery_fields
from webhook_operator.health import DeliveryState, endpoint_health, summarize

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("active", "state", "expected"),
    [
        (True, None, (Health.PENDING, None)),
        (True, DeliveryState(), (Health.PENDING, None)),
        (False, None, (Health.DISABLED, "Paused")),
        (
            False,
            DeliveryState(last_delivery_time=T0, last_success_time=T0),
            (Health.DISABLED, "Paused"),
        ),
        (True, DeliveryState(last_delivery_time=T0, last_success_time=T0), (Health.HEALTHY, None)),
        (
            True,
            DeliveryState(last_delivery_time=LATER, last_success_time=T0, last_failure_time=LATER),
            (Health.FAILING, None),
        ),
        (
            True,
            DeliveryState(last_delivery_time=LATER, last_success_time=LATER, last_failure_time=T0),
            (Health.HEALTHY, None),
        ),
        (True, DeliveryState(last_delivery_time=T0, last_failure_time=T0), (Health.FAILING, None)),
        (
            True,
            DeliveryState(
                last_delivery_time=T0, last_failure_time=T0, disabled_reason="RetriesExhausted"
            ),
            (Health.DISABLED, "RetriesExhausted"),
        ),
    ],
)
def test_endpoint_health(
    active: bool, state: DeliveryState | None, expected: tuple[Health, str | None]
) -> None:
    assert endpoint_health(active, state) == expected


def test_summary_counts_and_latest_times() -> None:
    summary = summarize(
        [
            (Health.HEALTHY, T0, T0, None),
            (Health.FAILING, LATER, T0, LATER),
            (Health.PENDING, None, None, None),
        ]
    )
    assert (summary.endpoints, summary.healthy, summary.failing, summary.pending) == (3, 1, 1, 1)
    assert summary.last_delivery_time == LATER
    assert summary.last_success_time == T0
    assert summary.last_failure_time == LATER


def test_delivery_fields_for_the_status() -> None:
    state = DeliveryState(
        last_delivery_time=LATER,
        last_success_time=T0,
        last_failure_time=LATER,
        last_http_status=503,
        last_error="503 Service Unavailable",
        consecutive_failures=2,
        counts={"delivered": 5, "failed": 2},
        window="24h",
    )
    fields = delivery_fields(True, state)
    assert fields["health"] == "Failing"
    assert fields["lastDeliveryTime"] == "2026-01-01T00:01:00Z"
    assert fields["consecutiveFailures"] == 2
    assert fields["deliveries"] == {"delivered": 5, "failed": 2, "window": "24h"}
    assert delivery_fields(True, None) == {"health": "Pending", "disabledReason": None}


def test_health_changes_that_deserve_an_event() -> None:
    from webhook_operator.health import health_event

    disabled = health_event("Failing", Health.DISABLED, "RetriesExhausted", "ep")
    assert disabled is not None
    assert disabled[:2] == ("Warning", "EndpointDisabled")
    assert "RetriesExhausted" in disabled[2]
    assert "kubectl webhooks enable ep" in disabled[2]
    assert health_event("Healthy", Health.DISABLED, "Gone", "ep") is not None
    recovered = health_event("Disabled", Health.HEALTHY, None, "ep")
    assert recovered is not None
    assert recovered[:2] == ("Normal", "EndpointRecovered")
    assert health_event("Failing", Health.HEALTHY, None, "ep") is not None
    # No event: a pause (the user's own doing), no change, a first success.
    assert health_event("Healthy", Health.DISABLED, "Paused", "ep") is None
    assert health_event("Disabled", Health.DISABLED, "Gone", "ep") is None
    assert health_event(None, Health.DISABLED, "Gone", "ep") is not None
    assert health_event(None, Health.HEALTHY, None, "ep") is None
    assert health_event("Pending", Health.HEALTHY, None, "ep") is None
