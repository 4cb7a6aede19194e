"""Events addressed to one endpoint rather than to an app's subscribers: the ping a user
asks for, and the operator's operational notifications to an app's operational endpoint.

The endpoint is named, so it is the subscriber: neither the app's catalog nor the
endpoint's `events` decide. The event is stored in the endpoint's own app, so it shows in
that app's delivery log, is signed with the endpoint's secret and is retried under its
policy like any other. A paused or disabled endpoint holds it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webhook_operator import ids
from webhook_operator.delivery import ingest
from webhook_operator.delivery.endpoint_states import EndpointStates
from webhook_operator.store.base import DeliveryStatus, NewDelivery, NewEvent, Store

PING_TYPE = "webhook.ping"


@dataclass(frozen=True)
class Addressed:
    event_id: str
    delivery_id: str | None  # None for a duplicate: the earlier event's delivery stands
    held: bool
    duplicate: bool


class AddressedEvents:
    def __init__(self, store: Store, states: EndpointStates, wake: Callable[[], None]) -> None:
        self.store = store
        self.states = states
        self.wake = wake

    async def send(
        self,
        namespace: str,
        endpoint: str,
        app: str,
        type_: str,
        data: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> Addressed:
        now = time.time()
        event_id = ids.event_id(now)
        submitted = ingest.Submitted(type_, idempotency_key, data)
        event = NewEvent(
            id=event_id,
            namespace=namespace,
            app=app,
            type=type_,
            payload=ingest.payload(event_id, submitted, now),
            idempotency_key=idempotency_key,
            created_at=now,
        )
        delivery_id = ids.delivery_id(now)
        held = self.states.holds((namespace, endpoint))
        status = DeliveryStatus.HELD if held else DeliveryStatus.PENDING
        stored_id, _, duplicate = await self.store.create_event(
            event, [NewDelivery(delivery_id, endpoint, status, now)]
        )
        if duplicate:
            return Addressed(stored_id, None, held, True)
        self.wake()
        if held:
            await self.states.held([(namespace, endpoint)])
        return Addressed(event_id, delivery_id, held, False)

    async def ping(self, namespace: str, endpoint: str, app: str) -> Addressed:
        return await self.send(
            namespace, endpoint, app, PING_TYPE, {"namespace": namespace, "endpoint": endpoint}
        )
