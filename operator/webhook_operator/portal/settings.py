"""How a portal process is configured (flags of `webhook-operator portal`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PortalSettings:
    kubeconfig: str | None = None
    host: str = "0.0.0.0"
    port: int = 8090
    # The delivery service's API: deliveries, pings, resends and replays go through it.
    delivery_url: str = "http://webhook-operator-delivery:8080"
    # Where customers reach the portal (scheme, host, optional path prefix): the base of
    # the portalUrl answered with each ticket. Unset: taken from the issuing request.
    public_url: str | None = None
    # Networks customers' URLs may point to beyond the public internet (as the delivery
    # service's --allow-cidr; give both the same list).
    allow_cidrs: tuple[str, ...] = ()
    # The Secret holding the ticket signing key, in the portal's own namespace.
    key_namespace: str = "default"
    key_secret: str = "webhook-operator-portal-ticket-key"
    default_ttl: float = 15 * 60.0
    max_ttl: float = 3600.0
    # Requests per second each ticket may make (with a burst of twice that).
    ticket_rate: float = 10.0
    max_body: int = 64 * 1024
    header_timeout: float = 15.0
    body_timeout: float = 30.0
    # How long creating an endpoint or rotating its secret waits for the operator to write
    # the Secret before answering without it.
    secret_wait: float = 15.0
