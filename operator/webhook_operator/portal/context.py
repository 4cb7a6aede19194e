"""What every portal handler needs, built once by the composition root (server.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes_asyncio import client

from webhook_operator.kube_auth import Authorizer
from webhook_operator.kube_rest import KubeRest
from webhook_operator.portal.delivery_client import DeliveryClient
from webhook_operator.portal.directory import Directory
from webhook_operator.portal.settings import PortalSettings
from webhook_operator.portal.tenant import TenantAuth
from webhook_operator.portal.ticket_keys import TicketKeys
from webhook_operator.url_policy import AddressPolicy


@dataclass
class Portal:
    settings: PortalSettings
    api: client.ApiClient
    rest: KubeRest
    directory: Directory
    keys: TicketKeys
    authorizer: Authorizer
    delivery: DeliveryClient
    tenant: TenantAuth
    addresses: AddressPolicy
    clock: Callable[[], float] = field(default=time.time)
