"""Prometheus metrics of the delivery service, in a registry of its own so that tests and
several services in one process never collide."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Rows per store batch: the claim and result batches stop at 64, ingest commits at 256.
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _children: dict[tuple[object, ...], Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter(
            "webhook_events_accepted",
            "Events accepted at ingest.",
            ["namespace", "app"],
            registry=r,
        )
        self.attempts = Counter(
            "webhook_delivery_attempts",
            "Delivery attempts by outcome (success, retry, gone).",
            ["namespace", "endpoint", "outcome"],
            registry=r,
        )
        self.deliveries = Counter(
            "webhook_deliveries_finished",
            "Deliveries that reached a final state (delivered, exhausted, expired).",
            ["namespace", "endpoint", "status"],
            registry=r,
        )
        self.filter_errors = Counter(
            "webhook_filter_errors",
            "Events not delivered to an endpoint because of its filter itself, by reason:"
            " error (it failed on the event), not_bool (it answered no bool), invalid (it"
            " does not compile).",
            ["namespace", "endpoint", "reason"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "webhook_delivery_attempt_duration_seconds",
            "Duration of one HTTP attempt.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.latency_seconds = Histogram(
            "webhook_delivery_latency_seconds",
            "From event accepted to delivered (first successful attempt).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Each replica's batches: a replica that pays its per-batch costs over few rows
        # spends more CPU per delivery (light load, or replicas splitting a small load).
        batch_rows = Histogram(
            "webhook_store_batch_rows",
            "Rows per store batch, by operation: ingest (events per group commit), claim"
            " (deliveries per claim), results (attempts recorded per batch).",
            ["operation"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.ingest_batch = batch_rows.labels("ingest")
        self.claim_batch = batch_rows.labels("claim")
        self.results_batch = batch_rows.labels("results")
        self.queue_due = Gauge(
            "webhook_queue_due", "Deliveries due for an attempt now.", registry=r
        )
        self.queue_scheduled = Gauge(
            "webhook_queue_scheduled",
            "Deliveries waiting for an attempt (due or later).",
            registry=r,
        )
        self.oldest_due = Gauge(
            "webhook_queue_oldest_due_age_seconds",
            "How long the oldest due delivery has waited.",
            registry=r,
        )
        self.held = Gauge(
            "webhook_deliveries_held",
            "Deliveries held for paused or disabled endpoints.",
            registry=r,
        )
        self.disabled = Gauge(
            "webhook_endpoints_disabled", "Endpoints disabled automatically.", registry=r
        )

    def count(self, counter: Counter, *labels: str) -> None:
        """Add one to a labelled counter. `labels()` validates and locks on every call;
        the children are looked up here once per label set instead (hot path)."""
        key = (id(counter), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        child.inc()

    def forget(self, namespace: str, endpoint: str) -> None:
        """Drop the cached children of a deleted endpoint."""
        for key in [k for k in self._children if k[1:3] == (namespace, endpoint)]:
            del self._children[key]
