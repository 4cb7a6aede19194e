"""What every reconcile needs, handed down explicitly instead of kept in globals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from webhook_operator.controller.kube import Kube
from webhook_operator.controller.status_writer import StatusWriter
from webhook_operator.controller.store import NsName, Store
from webhook_operator.controller.workqueue import WorkQueue
from webhook_operator.health import DeliveryState
from webhook_operator.operational import Announced

if TYPE_CHECKING:
    from webhook_operator.controller.operational import Notifier

# ("endpoint" | "app", namespace, name)
ObjKey = tuple[str, str, str]
ENDPOINTS = "webhookendpoints"
APPS = "webhookapps"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Context:
    kube: Kube
    writer: StatusWriter
    store: Store = field(default_factory=Store)
    queue: WorkQueue[ObjKey] = field(default_factory=WorkQueue)
    delivery: dict[NsName, DeliveryState] = field(default_factory=dict)
    # The failure reason last announced with a Warning Event, per endpoint/app, so a
    # condition that stays false is announced once, not on every reconcile.
    warned: dict[ObjKey, str] = field(default_factory=dict)
    clock: Callable[[], datetime] = utcnow
    # What each endpoint's app's operational endpoint was last told (operational.Announced),
    # and who tells it (None: no delivery service configured).
    operational: dict[NsName, Announced] = field(default_factory=dict)
    notifier: Notifier | None = None
