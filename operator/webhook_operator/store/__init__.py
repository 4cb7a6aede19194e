"""Durable storage of events, deliveries, attempts and per-endpoint delivery state: one
protocol (`base.Store`), implemented once (`core.StoreCore`, SQL in `sql/*.sql`, rows in
`rows.py`) over two connectors: SQLite (one replica) and PostgreSQL (several replicas),
both passing the contract suite in tests/integration/test_store_contract.py."""

from webhook_operator.store.base import (
    AttemptResult,
    Claimed,
    DeliveryDetail,
    DeliveryQuery,
    DeliveryRow,
    DeliveryStatus,
    EndpointState,
    NewDelivery,
    NewEvent,
    OwnerInUse,
    QueueStats,
    RateGrant,
    Store,
    Sweep,
)

__all__ = [
    "AttemptResult",
    "Claimed",
    "DeliveryDetail",
    "DeliveryQuery",
    "DeliveryRow",
    "DeliveryStatus",
    "EndpointState",
    "NewDelivery",
    "NewEvent",
    "OwnerInUse",
    "QueueStats",
    "RateGrant",
    "Store",
    "Sweep",
]
