"""The v1alpha1 API: WebhookApp and WebhookEndpoint, written once.

These pydantic models are the single source of the CRD schemas in `crds/` (see
`webhook_operator.crdgen`), and the operator and the delivery service parse objects with
them. Field docstrings become the OpenAPI descriptions that `kubectl explain` prints, so
they are written for the person reading that output. Rules that types alone cannot say are
CEL rules (`x-kubernetes-validations`) attached with `cel()`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "webhook-operator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# A Go-style duration ("30s", "5m", "1h30m"), which CEL's duration() also parses.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# Event type names: dot-separated lowercase segments ("invoice.paid").
EVENT_TYPE_PATTERN = r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$"
# A subscription may also end in a wildcard segment ("invoice.*") or be "*" alone.
EVENT_FILTER_PATTERN = r"^(\*|[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*(\.\*)?)$"

# A payload filter (a CEL expression): ample for real filters, small enough that the
# apiserver and the delivery service never compile an essay.
MAX_FILTER_LENGTH = 4096
DEFAULT_RETRY_SCHEDULE = ("1m", "5m", "30m", "2h")


def cel_string(value: str) -> str:
    """A CEL string literal for `value` (CEL, like Go, rejects unknown escapes such as \\.)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


URL_PATTERN = r"^https?://[^/?#@\s]+([/?#]\S*)?$"


def cel(rule: str, message: str, **extra: str) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry."""
    return {"rule": rule, "message": message, **extra}


def k8s_extra(*rules: dict[str, Any], **schema: Any) -> dict[str, Any]:
    """json_schema_extra carrying CEL rules and other Kubernetes schema keys."""
    extra: dict[str, Any] = dict(schema)
    if rules:
        extra["x-kubernetes-validations"] = list(rules)
    return extra


def positive_duration(what: str) -> dict[str, Any]:
    return cel(
        f"self.matches({cel_string(DURATION_PATTERN)}) && duration(self) > duration('0s')",
        f"{what} must be a positive duration such as 30s, 5m or 2h",
    )


def non_negative_duration(what: str) -> dict[str, Any]:
    return cel(
        f"self.matches({cel_string(DURATION_PATTERN)})",
        f"{what} must be a duration such as 0s, 30m or 24h",
    )


RetryDelay = Annotated[
    str,
    Field(
        max_length=32,
        json_schema_extra=k8s_extra(positive_duration("each retry delay")),
    ),
]

EventFilter = Annotated[
    str,
    Field(
        max_length=256,
        json_schema_extra=k8s_extra(
            cel(
                f"self.matches({cel_string(EVENT_FILTER_PATTERN)})",
                "each event must be a type such as invoice.paid, a wildcard such as"
                " invoice.*, or *",
            )
        ),
    ),
]


# An origin only: scheme, host and optional port, nothing after (frame-ancestors takes it
# as is, so a path, space or quote would change the policy's meaning).
EMBED_ORIGIN_PATTERN = r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$"
ACCENT_COLOR_PATTERN = r"^#[0-9a-fA-F]{6}$"

EmbedOrigin = Annotated[str, Field(max_length=256, pattern=EMBED_ORIGIN_PATTERN)]


class Model(BaseModel):
    """camelCase on the wire, docstrings as descriptions, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
    )


class Health(StrEnum):
    """Endpoint health as shown by `kubectl get webhookendpoints`."""

    PENDING = "Pending"
    HEALTHY = "Healthy"
    FAILING = "Failing"
    DISABLED = "Disabled"


# --- shared pieces -------------------------------------------------------------------------


class LocalObjectReference(Model):
    name: str = Field(min_length=1, max_length=253)
    """Name of the object in the same namespace."""


class SecretKeyReference(Model):
    name: str = Field(min_length=1, max_length=253)
    """Name of a Secret in the endpoint's namespace. The operator reads it and never modifies
    it; rotate such a secret by changing the Secret yourself."""
    key: str = Field(default="secret", min_length=1, max_length=253)
    """Key in the Secret whose value is the signing secret, in the form whsec_<base64> with
    at least 24 random bytes."""


class RetryPolicy(Model):
    schedule: list[RetryDelay] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE),
        min_length=0,
        max_length=20,
        json_schema_extra=k8s_extra(**{"x-kubernetes-list-type": "atomic"}),
    )
    """Delays before each retry, counted from the previous attempt, as durations. The
    default 1m, 5m, 30m, 2h makes five attempts in all; an empty list means a single
    attempt. After the last failed attempt the delivery is exhausted and the endpoint is
    disabled automatically."""


class RateLimit(Model):
    per_second: int = Field(ge=1, le=100_000)
    """Deliveries per second this endpoint receives at most. Also applies when held or
    replayed deliveries drain after the endpoint is enabled again."""
    burst: int | None = Field(default=None, ge=1, le=100_000)
    """Deliveries allowed at once above the steady rate. Defaults to perSecond."""


class SecretRotation(Model):
    grace_period: str = Field(
        default="24h",
        max_length=32,
        json_schema_extra=k8s_extra(non_negative_duration("gracePeriod")),
    )
    """How long the previous secret keeps verifying after a rotation. During this period
    deliveries carry one signature per valid secret. 0s stops the old secret at once."""
    interval: str | None = Field(
        default=None,
        max_length=32,
        json_schema_extra=k8s_extra(positive_duration("interval")),
    )
    """Rotate the generated secret automatically this often (for example 720h). Unset
    means rotation only on demand, with the annotation webhook-operator.dev/rotate-secret."""


# Header names a user may set (headers, headersFrom): one set of rules for both, each a
# CEL predicate over a name and the message when it is false ("who" is the field's name).
HEADER_NAME_RULES: tuple[tuple[Callable[[str], str], Callable[[str], str]], ...] = (
    (
        lambda k: f"!{k}.lowerAscii().startsWith('webhook-')",
        lambda who: f"{who} must not set the webhook-* signature headers",
    ),
    (
        lambda k: f"{k}.matches('^[A-Za-z0-9-]+$')",
        lambda who: "header names may contain only letters, digits and '-'",
    ),
    (
        lambda k: (
            f"!({k}.lowerAscii() in ['host', 'content-length', 'content-type',"
            " 'connection', 'transfer-encoding', 'user-agent'])"
        ),
        lambda who: (
            f"{who} must not set Host, Content-Length, Content-Type, Connection,"
            " Transfer-Encoding or User-Agent"
        ),
    ),
)


class DeliverySettings(Model):
    """Delivery settings shared by endpoints and by an app's endpoint defaults."""

    retry: RetryPolicy | None = None
    """When to retry a failed delivery."""
    timeout: str | None = Field(
        default=None,
        max_length=32,
        json_schema_extra=k8s_extra(
            positive_duration("timeout"),
            cel(
                f"!self.matches({cel_string(DURATION_PATTERN)})"
                " || duration(self) <= duration('60s')",
                "timeout must be at most 60s",
            ),
        ),
    )
    """How long one attempt may take, headers and body included, before it counts as a
    failure. Default 15s, at most 60s."""
    rate_limit: RateLimit | None = None
    """Upper bound on the delivery rate to this endpoint. Unset means no rate limit."""
    max_concurrency: int | None = Field(default=None, ge=1, le=1000)
    """How many deliveries may be in flight to this endpoint at once. Default 10."""
    headers: dict[str, str] | None = Field(
        default=None,
        json_schema_extra=k8s_extra(
            *[
                cel(f"self.all(k, {check('k')})", message("headers"))
                for check, message in HEADER_NAME_RULES
            ],
            maxProperties=32,
        ),
    )
    """Extra HTTP headers sent with every delivery, for example an API key the receiver
    expects. They cannot replace the webhook-* signature headers."""
    secret_rotation: SecretRotation | None = None
    """Grace period and optional schedule for rotating the signing secret."""
    hold_for: str | None = Field(
        default=None,
        max_length=32,
        json_schema_extra=k8s_extra(
            cel(
                f"self == '0' || self.matches({cel_string(DURATION_PATTERN)})",
                "holdFor must be a duration such as 72h or 30m, or 0 to hold forever",
            ),
        ),
    )
    """How long a delivery waits while the endpoint is paused or disabled. Held
    deliveries older than this (counted from when the event was accepted) become expired:
    no attempt is made, and `kubectl webhooks replay --status expired` sends them again.
    Default 72h; 0 (or 0s) holds them until the endpoint is active again."""


# --- Secrets the endpoint's requests use ----------------------------------------------------


def _header_name_schema(schema: dict[str, Any]) -> None:
    schema["x-kubernetes-validations"] = [
        cel(check("self"), message("headersFrom")) for check, message in HEADER_NAME_RULES
    ]


class SecretKeySelector(Model):
    name: str = Field(min_length=1, max_length=253)
    """Name of a Secret in the endpoint's namespace. The operator and the delivery service
    only read it."""
    key: str = Field(min_length=1, max_length=253)
    """Key in the Secret whose value is used."""


class HeaderFromSecret(Model):
    name: str = Field(min_length=1, max_length=256, json_schema_extra=_header_name_schema)
    """The HTTP header's name, for example Authorization or X-Api-Key."""
    secret_key_ref: SecretKeySelector
    """The Secret key holding the header's value. Leading and trailing whitespace (such as
    the newline a file ends with) is dropped."""


class CASecretReference(Model):
    name: str = Field(min_length=1, max_length=253)
    """Name of a Secret in the endpoint's namespace holding the CA certificate(s), in PEM."""
    key: str = Field(default="ca.crt", min_length=1, max_length=253)
    """Key in the Secret holding the PEM certificates. Default ca.crt."""


class ClientCertReference(Model):
    name: str = Field(min_length=1, max_length=253)
    """Name of a kubernetes.io/tls Secret in the endpoint's namespace: its tls.crt
    (certificate chain, PEM) and tls.key (private key, PEM, unencrypted) are presented to
    the receiver."""


class EndpointTLS(Model):
    ca_secret_ref: CASecretReference | None = None
    """Trust the receiver's certificate only when it is issued by the CA(s) in this Secret
    (for receivers with a private CA). They replace the system's trust store for this
    endpoint. Unset: the system's trust store."""
    client_cert_secret_ref: ClientCertReference | None = None
    """Present this client certificate to the receiver (mutual TLS)."""


# --- WebhookEndpoint -----------------------------------------------------------------------


def _events_schema(schema: dict[str, Any]) -> None:
    # The CEL rule says it better than minItems' "should have at least 1 items"; keeping
    # both would print the complaint twice.
    schema.pop("minItems", None)
    schema["x-kubernetes-list-type"] = "set"
    schema["x-kubernetes-validations"] = [
        cel("self.size() >= 1", "events must name at least one event type")
    ]


class WebhookEndpointSpec(DeliverySettings):
    model_config = ConfigDict(
        json_schema_extra=k8s_extra(
            cel(
                "self.url.startsWith('https://') || (self.url.startsWith('http://')"
                " && has(self.allowInsecureHttp) && self.allowInsecureHttp)",
                "url must use https:// (set allowInsecureHttp: true to allow plain http://)",
                fieldPath=".url",
                reason="FieldValueInvalid",
            ),
            cel(
                "!has(self.headersFrom) || !has(self.headers) || self.headersFrom.all(h,"
                " !self.headers.exists(k, k.lowerAscii() == h.name.lowerAscii()))",
                "a header must not be set both in headers and in headersFrom",
                fieldPath=".headersFrom",
            ),
            cel(
                "!has(self.tls) || self.url.startsWith('https://')",
                "tls applies only to an https:// url",
                fieldPath=".tls",
            ),
        )
    )

    app_ref: LocalObjectReference
    """The WebhookApp in this namespace whose events this endpoint receives."""
    url: str = Field(
        min_length=1,
        max_length=2048,
        json_schema_extra=k8s_extra(
            cel(
                f"self.matches({cel_string(URL_PATTERN)})",
                "url must be an absolute http(s) URL with a host and no credentials",
            )
        ),
    )
    """Where deliveries are POSTed. Must be https:// unless allowInsecureHttp is true."""
    allow_insecure_http: bool = False
    """Allow a plain http:// url. Meant for in-cluster receivers and local development;
    payloads and signatures then travel unencrypted."""
    description: str | None = Field(default=None, max_length=1024)
    """A note for people, for example "Slack #billing notifier"."""
    events: list[EventFilter] = Field(
        min_length=1,
        max_length=256,
        json_schema_extra=_events_schema,
    )
    """Event types this endpoint subscribes to, such as invoice.paid. A trailing wildcard
    segment (invoice.*) matches every type under it; * alone matches everything. When the
    app declares an event catalog, each entry must match a catalog type."""
    filter: str | None = Field(default=None, max_length=MAX_FILTER_LENGTH)
    """A CEL expression over the event that must be true for this endpoint to receive it,
    on top of events: for example data.amount > 1000 && data.currency == "EUR". Variables:
    type, id and timestamp (strings, as in the payload) and data (the event's data). An
    event on which the expression fails (a missing field, a type mismatch) or answers
    something other than a bool is not delivered here and is counted in the metric
    webhook_filter_errors_total. An expression that does not compile sets Ready=False
    with reason InvalidFilter, and the endpoint then receives nothing."""
    active: bool = True
    """false pauses delivery without deleting the endpoint: events that arrive meanwhile are
    held and delivered, oldest first, when it is true again."""
    secret_ref: SecretKeyReference | None = None
    """Use your own signing secret from this Secret. Unset, the operator generates one in a
    Secret named <endpoint>-signing-secret, owned by this endpoint. To rotate with a grace
    period, put the old value under the key <key>.previous (secret.previous for the default
    key): while it is there, deliveries carry both signatures."""
    headers_from: list[HeaderFromSecret] | None = Field(
        default=None,
        max_length=32,
        json_schema_extra=k8s_extra(
            cel(
                "self.all(h, self.exists_one(o, o.name.lowerAscii() == h.name.lowerAscii()))",
                "headersFrom must not name the same header twice",
            ),
            **{"x-kubernetes-list-type": "atomic"},
        ),
    )
    """HTTP headers whose values come from Secrets in this namespace, sent with every
    delivery, for example an API key kept out of Git. Values are never logged nor kept in
    the delivery log. A name also set in headers is refused."""
    tls: EndpointTLS | None = None
    """TLS to the receiver: a private CA to trust and a client certificate for mutual TLS.
    Only for https:// urls."""


class Condition(Model):
    """A condition in the standard Kubernetes shape."""

    type: str = Field(max_length=316)
    """Type of the condition, for example Ready, SecretReady or AppResolved."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = Field(max_length=1024)
    """One CamelCase word saying why, for example AppNotFound."""
    message: str = Field(default="", max_length=32768)
    """What is wrong and how to fix it, for people."""
    last_transition_time: datetime
    """When the status last changed."""
    observed_generation: int | None = Field(default=None, ge=0)
    """metadata.generation of the object this condition was computed from."""


_CONDITIONS_EXTRA = k8s_extra(
    **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}
)


class SecretStatus(Model):
    secret_name: str | None = None
    """The Secret holding the signing secret (generated, or the one in secretRef)."""
    rotated_at: datetime | None = None
    """When the secret was last rotated."""
    previous_expires_at: datetime | None = None
    """Until when the previous secret still verifies. Unset when there is none."""


class DeliveryCounts(Model):
    delivered: int = Field(default=0, ge=0)
    """Deliveries that succeeded in the recent window."""
    failed: int = Field(default=0, ge=0)
    """Attempts that failed in the recent window."""
    exhausted: int = Field(default=0, ge=0)
    """Deliveries that used up every retry in the recent window."""
    pending: int = Field(default=0, ge=0)
    """Deliveries waiting for their next attempt now."""
    held: int = Field(default=0, ge=0)
    """Deliveries held while the endpoint is paused or disabled."""
    expired: int = Field(default=0, ge=0)
    """Held deliveries that waited longer than holdFor and expired in the recent window."""
    window: str | None = None
    """The recent window these counts cover, for example 24h."""


class WebhookEndpointStatus(Model):
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation this status was computed from."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=_CONDITIONS_EXTRA)
    """Ready, plus SecretReady and AppResolved, each with a reason when False."""
    health: Health = Health.PENDING
    """Pending (no delivery yet), Healthy (last delivery 2xx), Failing (last attempt failed,
    still retrying) or Disabled (retries exhausted, receiver answered 410 Gone, or paused)."""
    disabled_reason: str | None = None
    """Why the endpoint is Disabled: Paused, RetriesExhausted or Gone."""
    disabled_at: datetime | None = None
    """When delivery was disabled automatically."""
    last_delivery_time: datetime | None = None
    """When the last delivery attempt ended, successful or not."""
    last_success_time: datetime | None = None
    """When the last delivery succeeded."""
    last_failure_time: datetime | None = None
    """When the last delivery attempt failed."""
    last_http_status: int | None = None
    """HTTP status of the last attempt; unset when no response arrived."""
    last_error: str | None = Field(default=None, max_length=1024)
    """Error of the last failed attempt, as the delivery log shows it."""
    consecutive_failures: int = Field(default=0, ge=0)
    """Failed attempts since the last success."""
    deliveries: DeliveryCounts | None = None
    """Delivery counts over a recent window."""
    secret: SecretStatus | None = None
    """Where the signing secret is and its rotation state. Never the secret itself."""


# --- WebhookApp ----------------------------------------------------------------------------


class EventType(Model):
    name: str = Field(
        max_length=256,
        json_schema_extra=k8s_extra(
            cel(
                f"self.matches({cel_string(EVENT_TYPE_PATTERN)})",
                "event type names are dot-separated lowercase words, such as invoice.paid",
            )
        ),
    )
    """The event type, such as invoice.paid."""
    description: str | None = Field(default=None, max_length=4096)
    """What the event means and when it is sent."""
    category: str | None = Field(default=None, max_length=128)
    """A group to list the event under, such as Billing."""
    schema_: dict[str, Any] | None = Field(
        default=None,
        alias="schema",
        json_schema_extra=k8s_extra(
            **{"x-kubernetes-preserve-unknown-fields": True, "type": "object"}
        ),
    )
    """Optional JSON Schema that the event's data must satisfy. Events that fail it are
    refused at ingest with 422."""
    deprecated: bool = False
    """Still accepted, but marked deprecated in the catalog."""


class PortalSettings(Model):
    """What the platform's customers may do through the portal for this app."""

    enabled: bool = True
    """Whether access tickets can be issued for this app and the tenant API serves it."""
    max_endpoints: int = Field(default=20, ge=0, le=10_000)
    """How many endpoints the app may have in all (Git-managed ones count too) before the
    portal refuses to create more."""
    allow_insecure_http: bool = False
    """Whether customers may register plain http:// URLs. Off, only https:// is accepted."""
    event_types: list[EventFilter] | None = Field(
        default=None,
        max_length=1024,
        json_schema_extra=k8s_extra(**{"x-kubernetes-list-type": "set"}),
    )
    """The event types customers may subscribe to (exact types or wildcards such as
    invoice.*). Unset means every type of the catalog."""
    embed_origins: list[EmbedOrigin] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra=k8s_extra(**{"x-kubernetes-list-type": "set"}),
    )
    """The https origins (such as https://app.example.com) whose pages may embed the portal
    page in a frame. Empty: no site may frame it."""
    display_name: str | None = Field(default=None, min_length=1, max_length=80)
    """The name the portal page shows for this app, instead of the WebhookApp's name."""
    accent_color: str | None = Field(default=None, pattern=ACCENT_COLOR_PATTERN)
    """The portal page's accent colour, as #rrggbb."""
    logo_url: str | None = Field(
        default=None,
        max_length=2048,
        json_schema_extra=k8s_extra(
            cel("self.startsWith('https://')", "logoUrl must be an https:// URL")
        ),
    )
    """An https:// image the portal page shows next to the display name."""


class WebhookAppSpec(Model):
    description: str | None = Field(default=None, max_length=1024)
    """What this app sends, for people."""
    event_types: list[EventType] = Field(
        default_factory=list,
        max_length=1024,
        json_schema_extra=k8s_extra(
            **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
        ),
    )
    """The event catalog. When it is not empty, emitting an undeclared type is refused and
    endpoints may subscribe only to declared types (or wildcards matching them)."""
    endpoint_defaults: DeliverySettings | None = None
    """Delivery settings that this app's endpoints inherit when they do not set their own."""
    portal: PortalSettings | None = None
    """Guard rails for the customer portal: whether it serves this app, how many endpoints
    customers may create, whether plain http is allowed and which event types they may
    pick. Unset means the defaults."""
    operational_endpoint_ref: LocalObjectReference | None = None
    """A WebhookEndpoint in this namespace (of this app or another, for example a platform
    team's own app) that receives signed operational events about this app's endpoints:
    webhook-operator.endpoint.failing (after operationalFailingAfter failures in a row),
    webhook-operator.endpoint.disabled (retries exhausted or 410 Gone) and
    webhook-operator.endpoint.recovered. It receives them whatever its own `events` say,
    and never about itself."""
    operational_failing_after: int = Field(default=5, ge=1, le=1000)
    """Consecutive failed attempts after which webhook-operator.endpoint.failing is sent."""


class WebhookAppStatus(Model):
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation this status was computed from."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=_CONDITIONS_EXTRA)
    """Ready, with a reason when False."""
    endpoints: int = Field(default=0, ge=0)
    """Endpoints referring to this app."""
    healthy_endpoints: int = Field(default=0, ge=0)
    """Endpoints whose last delivery succeeded."""
    failing_endpoints: int = Field(default=0, ge=0)
    """Endpoints whose last attempt failed and that are still retrying."""
    disabled_endpoints: int = Field(default=0, ge=0)
    """Endpoints paused or disabled automatically."""
    pending_endpoints: int = Field(default=0, ge=0)
    """Endpoints that have not had a delivery yet."""
    last_delivery_time: datetime | None = None
    """Last delivery attempt across the app's endpoints."""
    last_success_time: datetime | None = None
    """Last successful delivery across the app's endpoints."""
    last_failure_time: datetime | None = None
    """Last failed attempt across the app's endpoints."""
    deliveries: DeliveryCounts | None = None
    """Delivery counts across the app's endpoints over a recent window."""
    event_types: list[str] = Field(default_factory=list)
    """The event types declared in the catalog."""
    categories: list[str] = Field(default_factory=list)
    """The categories used in the catalog."""
