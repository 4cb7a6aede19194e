"""The `kubectl webhooks` commands. Each one takes the shared flags as one `Shared`
(`options`), resolves its target, calls the delivery service or the portal (`client`) or
the Kubernetes API (`kube`) and prints with `render`; failures are PluginErrors, which
`kubectl_plugin.main` turns into one line and an exit code."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from webhook_operator import __version__, signing
from webhook_operator.api import names
from webhook_operator.plugin import parsing, render
from webhook_operator.plugin.client import DeliveryClient, PortalClient
from webhook_operator.plugin.errors import EPILOG, Exit, PluginError
from webhook_operator.plugin.options import Shared, shared_options
from webhook_operator.plugin.render import Output
from webhook_operator.plugin.target import PORTAL_ENV, SERVER_ENV, Target

if TYPE_CHECKING:
    from kubernetes import client as kube_client

PROG = "kubectl webhooks"
CommandFunction = TypeVar("CommandFunction", bound=Callable[..., Any])
GITOPS_NOTE = (
    "note: a GitOps tool (Argo CD, Flux) may revert this spec change on its next sync;"
    " setting spec.active in Git is the lasting way"
)
DEFAULT_LIMIT = 50
ALL_PAGE_SIZE = 500  # the service's maximum page: fewest round trips for --all
MAX_LIMIT = 500
# `verify --no-time-check`: a window wider than any timestamp, so only the HMAC counts.
NO_TIME_LIMIT = 10**12

app = typer.Typer(
    name=PROG,
    help="Inspect and drive webhook deliveries: emit events, read delivery logs, resend and"
    " replay, ping endpoints, rotate secrets, pause and resume, verify signatures, open the"
    " customer portal.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _command(name: str | None = None) -> Callable[[CommandFunction], CommandFunction]:
    def register(func: CommandFunction) -> CommandFunction:
        # Every command's --help ends with the exit codes, not only the top-level one.
        app.command(name, epilog=EPILOG)(shared_options(func))
        return func

    return register


def _service(target: Target) -> DeliveryClient:
    # The server first: "where is the service" is the more basic question than "who am I".
    server, origin = target.server
    return DeliveryClient(server, target.token, server_origin=origin)


def _kube(target: Target) -> kube_client.ApiClient:
    from webhook_operator.plugin import kube

    return kube.connect(target.require_kubeconfig())


def _now() -> datetime:
    return datetime.now(UTC)


def _bad(message: str) -> PluginError:
    return PluginError(message, Exit.USAGE)


def _read_input(path: str, what: str) -> bytes:
    """A file's bytes, or stdin's for `-`; exact bytes, because signatures cover them."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise _bad(f"cannot read {what} {path}: {exc.strerror or exc}") from None


# -- commands -------------------------------------------------------------------------------


@_command()
def emit(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The WebhookApp.")],
    event_type: Annotated[
        str, typer.Argument(metavar="TYPE", help="Event type, e.g. invoice.paid.")
    ],
    data: Annotated[
        str | None, typer.Option("--data", help="The event's data as JSON.", show_default=False)
    ] = None,
    data_file: Annotated[
        str | None,
        typer.Option(
            "--data-file", help="Read the data JSON from a file (- for stdin).", show_default=False
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="Idempotency key: emitting the same key again creates nothing new.",
            show_default=False,
        ),
    ] = None,
    *,
    opts: Shared,
) -> None:
    """Emit an event to an app; every subscribed endpoint gets a delivery."""
    if data is not None and data_file is not None:
        raise _bad("give --data or --data-file, not both")
    payload: Any = None
    try:
        if data is not None:
            payload = parsing.parse_json_data(data, "--data")
        elif data_file is not None:
            raw = _read_input(data_file, "--data-file")
            payload = parsing.parse_json_data(raw.decode("utf-8", errors="replace"), data_file)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    target = opts.target()
    with _service(target) as svc:
        result = svc.emit(target.namespace, app_name, event_type, payload, key)
    if opts.output is Output.JSON:
        render.print_json(result)
        return
    count = result.get("deliveries", 0)
    plural = "delivery" if count == 1 else "deliveries"
    if result.get("duplicate"):
        render.say(
            f"event {result.get('eventId')} already existed with id {key}: nothing new created"
        )
        return
    render.say(f"event {result.get('eventId')} accepted: {count} {plural} created")
    if count == 0:
        render.note(
            f"no endpoint of WebhookApp {app_name} in namespace {target.namespace}"
            f" subscribes to {event_type}"
        )


def _next_page_command(
    target: Target,
    app_name: str | None,
    endpoint: str | None,
    statuses: list[str],
    limit: int | None,
    cursor: str,
) -> str:
    """The command for the next page: the same filters with the new cursor. --server and
    --kubeconfig are repeated only when they did not come from the environment, and
    --token never is: it would land in shell history."""
    words = [*PROG.split(), "deliveries"]
    if app_name:
        words += ["--app", app_name]
    if endpoint:
        words += ["--endpoint", endpoint]
    words += ["-n", target.namespace]
    for status in statuses:
        words += ["--status", status]
    if limit is not None:
        words += ["--limit", str(limit)]
    for flag, value, env in (
        ("--server", target.server_flag, SERVER_ENV),
        ("--kubeconfig", target.kubeconfig_flag, "KUBECONFIG"),
    ):
        if value and os.environ.get(env) != value:
            words += [flag, value]
    words += ["--cursor", cursor]
    return " ".join(shlex.quote(w) for w in words)


@_command()
def deliveries(
    app_name: Annotated[
        str | None, typer.Option("--app", help="Deliveries of this app.", show_default=False)
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="Deliveries to this endpoint.", show_default=False),
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="Only these statuses (repeatable or comma-separated): pending, failed,"
            " delivered, exhausted, held, cancelled, expired.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=MAX_LIMIT,
            help=f"Page size (default {DEFAULT_LIMIT}; {ALL_PAGE_SIZE} with --all).",
            show_default=False,
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        typer.Option(
            "--cursor", help="Start after this cursor (from the previous page).", show_default=False
        ),
    ] = None,
    all_pages: Annotated[
        bool, typer.Option("--all", help="Follow cursors to the last page.")
    ] = False,
    *,
    opts: Shared,
) -> None:
    """List deliveries of an app or an endpoint, newest first."""
    if app_name is None and endpoint is None:
        raise _bad("give --app APP or --endpoint ENDPOINT (or both)")
    try:
        statuses = parsing.parse_statuses(status or [])
    except ValueError as exc:
        raise _bad(str(exc)) from None
    page_size = limit or (ALL_PAGE_SIZE if all_pages else DEFAULT_LIMIT)
    target = opts.target()
    items: list[dict[str, Any]] = []
    next_cursor = cursor
    with _service(target) as svc:
        while True:
            page = svc.deliveries(
                target.namespace,
                app=app_name,
                endpoint=endpoint,
                statuses=statuses,
                limit=page_size,
                cursor=next_cursor,
            )
            items += page.get("items") or []
            next_cursor = page.get("next") or None
            if not (all_pages and next_cursor):
                break
    if opts.output is Output.JSON:
        render.print_json({"items": items, "next": next_cursor})
        return
    if not items:
        what = f"app {app_name}" if app_name else f"endpoint {endpoint}"
        filtered = f" with status {', '.join(statuses)}" if statuses else ""
        render.note(f"no deliveries of {what}{filtered} in namespace {target.namespace}")
        return
    render.show(render.deliveries_table(items, _now()))
    if next_cursor:
        render.note(
            "more: " + _next_page_command(target, app_name, endpoint, statuses, limit, next_cursor)
        )


@_command()
def delivery(
    delivery_id: Annotated[str, typer.Argument(metavar="ID", help="The delivery id (dlv_...).")],
    *,
    opts: Shared,
) -> None:
    """Show one delivery and its attempts; -o json adds the payload."""
    target = opts.target()
    with _service(target) as svc:
        record = svc.delivery(target.namespace, delivery_id)
    if opts.output is Output.JSON:
        render.print_json(render.decoded_payload(record))
        return
    fields, attempts = render.delivery_view(record, _now())
    if attempts.row_count:
        render.show(fields, "", attempts)
    else:
        render.show(fields, "", "no attempts yet")
    render.note(f"the payload: {PROG} delivery {delivery_id} -n {target.namespace} -o json")


@_command()
def resend(
    delivery_id: Annotated[str, typer.Argument(metavar="ID", help="The delivery to send again.")],
    *,
    opts: Shared,
) -> None:
    """Send a delivery again, as a new delivery of the same event."""
    target = opts.target()
    with _service(target) as svc:
        result = svc.resend(target.namespace, delivery_id)
    if opts.output is Output.JSON:
        render.print_json({"resent": delivery_id, **result})
        return
    render.say(f"delivery {delivery_id} resent as {result.get('deliveryId')}")


@_command()
def replay(
    endpoint: Annotated[
        str | None,
        typer.Argument(
            metavar="[ENDPOINT]", help="The WebhookEndpoint (or every endpoint of --app)."
        ),
    ] = None,
    app: Annotated[
        str | None,
        typer.Option("--app", help="Replay every endpoint of this WebhookApp.", show_default=False),
    ] = None,
    *,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Replay deliveries created since this RFC 3339 time, or this long ago (2h, 3d).",
            show_default=False,
        ),
    ],
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="Which deliveries to replay (repeatable or comma-separated; default"
            " failed,exhausted; expired: held longer than the endpoint's holdFor).",
            show_default=False,
        ),
    ] = None,
    opts: Shared,
) -> None:
    """Send an endpoint's (or a whole app's) failed deliveries since a time again."""
    if (endpoint is None) == (app is None):
        raise _bad("name an ENDPOINT or --app APP (one of them)")
    try:
        start = parsing.parse_since(since, _now())
        statuses = parsing.parse_statuses(status or [])
    except ValueError as exc:
        raise _bad(str(exc)) from None
    since_text = parsing.rfc3339(start)
    target = opts.target()
    with _service(target) as svc:
        if app is not None:
            result = svc.replay_app(target.namespace, app, since_text, statuses)
        else:
            assert endpoint is not None
            result = svc.replay(target.namespace, endpoint, since_text, statuses)
    count = int(result.get("replayed", 0))
    if opts.output is Output.JSON:
        render.print_json({**result, "since": since_text, "statuses": statuses or None})
        return
    which = ", ".join(statuses) if statuses else "failed, exhausted"
    noun = "delivery" if count == 1 else "deliveries"
    if app is None:
        render.say(
            f"replayed {count} {noun} of endpoint {endpoint} created since {since_text} ({which})"
        )
        return
    per = ", ".join(f"{name}: {n}" for name, n in result.get("endpoints", {}).items())
    render.say(
        f"replayed {count} {noun} of app {app} created since {since_text} ({which});"
        f" {per or 'the app has no endpoints'}"
    )


PING_FINAL = ("delivered", "failed", "exhausted", "held", "cancelled")


@_command()
def ping(
    endpoint: Annotated[str, typer.Argument(metavar="ENDPOINT", help="The WebhookEndpoint.")],
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait for the first attempt and report its outcome."),
    ] = True,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the attempt.")
    ] = 30.0,
    *,
    opts: Shared,
) -> None:
    """Send a signed webhook.ping event to one endpoint; exit 1 if it is not delivered."""
    target = opts.target()
    with _service(target) as svc:
        result = svc.ping(target.namespace, endpoint)
        delivery_id = str(result.get("deliveryId"))
        record: dict[str, Any] | None = None
        if wait and not result.get("held"):
            deadline = time.monotonic() + timeout
            while True:
                record = svc.delivery(target.namespace, delivery_id)
                if record.get("status") in PING_FINAL or time.monotonic() >= deadline:
                    break
                time.sleep(0.3)
    status = str(record.get("status")) if record else ("held" if result.get("held") else "pending")
    if opts.output is Output.JSON:
        shown = render.decoded_payload(record) if record else None
        render.print_json({**result, "status": status, "delivery": shown})
    elif status == "delivered" and record is not None:
        attempts = record.get("attemptLog") or [{}]
        took = attempts[-1].get("durationMs")
        timing = f" in {took:.0f}ms" if isinstance(took, int | float) else ""
        render.say(f"ping delivered to {endpoint}: HTTP {record.get('lastHttpStatus')}{timing}")
    elif status == "held":
        render.say(
            f"ping held: endpoint {endpoint} is paused or disabled; it is delivered when the"
            f" endpoint is active again (`{PROG} resume` / `{PROG} enable`)"
        )
    elif status == "pending" and not wait:
        render.say(f"ping queued as delivery {delivery_id}")
    elif status == "pending":
        render.say(
            f"ping not attempted within {timeout:g}s; follow it with"
            f" `{PROG} delivery {delivery_id} -n {target.namespace}`"
        )
    else:
        last = record or {}
        detail = last.get("lastError") or f"HTTP {last.get('lastHttpStatus')}"
        render.say(f"ping to {endpoint} failed ({status}): {detail}")
    if wait and status != "delivered":
        raise typer.Exit(Exit.NEGATIVE)


def _stamp() -> str:
    # Millisecond precision: two requests a second apart must carry different values,
    # since the operator acts once per value.
    return parsing.rfc3339(_now())


@_command("rotate-secret")
def rotate_secret(
    endpoint: Annotated[str, typer.Argument(metavar="ENDPOINT", help="The WebhookEndpoint.")],
    value: Annotated[
        str | None,
        typer.Option(
            "--value",
            help="Value of the annotation (default: the current time). The operator rotates"
            " once per value.",
            show_default=False,
        ),
    ] = None,
    *,
    opts: Shared,
) -> None:
    """Rotate an endpoint's generated signing secret.

    The previous secret keeps verifying for the endpoint's grace period
    (spec.secretRotation.gracePeriod, 24h by default), and deliveries carry both
    signatures meanwhile."""
    from webhook_operator.plugin import kube

    target = opts.target()
    api = _kube(target)
    ns = target.namespace
    current = kube.get_endpoint(api, ns, endpoint)
    spec = current.get("spec") or {}
    ref = spec.get("secretRef")
    if ref:
        raise _bad(
            f"WebhookEndpoint {endpoint} signs with its own Secret {ref.get('name')}"
            " (spec.secretRef), which the operator never changes: rotate by updating that Secret"
        )
    new_value = value or _stamp()
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    if annotations.get(names.ROTATE_ANNOTATION) == new_value:
        raise _bad(
            f"{names.ROTATE_ANNOTATION} is already {new_value!r}, and the operator rotates"
            " once per value: pass a different --value"
        )
    kube.annotate_endpoint(api, ns, endpoint, names.ROTATE_ANNOTATION, new_value)
    if opts.output is Output.JSON:
        render.print_json(
            {
                "endpoint": endpoint,
                "namespace": ns,
                "annotation": names.ROTATE_ANNOTATION,
                "value": new_value,
            }
        )
        return
    grace = (spec.get("secretRotation") or {}).get("gracePeriod")
    if grace is None:
        # The app's endpointDefaults may set it; reading the app would need more RBAC.
        keeps = "the previous secret keeps verifying for the grace period (24h unless set)"
    elif grace.strip("0.mshd") == "":  # "0s", "0m", "0.0h": every digit is a zero
        keeps = "the previous secret stops verifying at once (gracePeriod 0)"
    else:
        keeps = f"the previous secret keeps verifying for {grace}"
    render.say(
        f"rotation of WebhookEndpoint {endpoint}'s signing secret requested"
        f" ({names.ROTATE_ANNOTATION}={new_value}); {keeps}"
    )


@_command()
def enable(
    endpoint: Annotated[str, typer.Argument(metavar="ENDPOINT", help="The WebhookEndpoint.")],
    *,
    opts: Shared,
) -> None:
    """Re-enable an endpoint that was disabled (retries exhausted, or 410 Gone).

    Its held deliveries are then sent. A paused endpoint (spec.active: false) stays paused:
    resume it with `kubectl webhooks resume`."""
    from webhook_operator.api.names import ENABLE_ANNOTATION
    from webhook_operator.plugin import kube

    target = opts.target()
    api = _kube(target)
    ns = target.namespace
    value = _stamp()
    updated = kube.annotate_endpoint(api, ns, endpoint, ENABLE_ANNOTATION, value)
    if opts.output is Output.JSON:
        render.print_json(
            {"endpoint": endpoint, "namespace": ns, "annotation": ENABLE_ANNOTATION, "value": value}
        )
        return
    status = updated.get("status") or {}
    reason = status.get("disabledReason")
    was = f" (it was disabled: {reason})" if reason else ""
    render.say(f"WebhookEndpoint {endpoint} enabled{was}; held deliveries resume shortly")
    if (updated.get("spec") or {}).get("active") is False:
        render.note(
            f"it is still paused (spec.active: false): `{PROG} resume {endpoint}` to deliver again"
        )


def _set_active(endpoint: str, active: bool, opts: Shared) -> None:
    from webhook_operator.plugin import kube

    target = opts.target()
    api = _kube(target)
    ns = target.namespace
    before = kube.get_endpoint(api, ns, endpoint)
    was = (before.get("spec") or {}).get("active", True) is not False
    kube.set_active(api, ns, endpoint, active)
    if opts.output is Output.JSON:
        render.print_json(
            {"endpoint": endpoint, "namespace": ns, "active": active, "changed": was != active}
        )
    else:
        verb = "resumed" if active else "paused"
        already = "" if was != active else " (it already was)"
        effect = (
            "held deliveries are sent now" if active else "new deliveries are held until resumed"
        )
        render.say(
            f"WebhookEndpoint {endpoint} {verb}{already}: spec.active is {str(active).lower()};"
            f" {effect}"
        )
    render.note(GITOPS_NOTE)


@_command()
def pause(
    endpoint: Annotated[str, typer.Argument(metavar="ENDPOINT", help="The WebhookEndpoint.")],
    *,
    opts: Shared,
) -> None:
    """Stop delivering to an endpoint (spec.active: false); deliveries are held, not lost."""
    _set_active(endpoint, False, opts)


@_command()
def resume(
    endpoint: Annotated[str, typer.Argument(metavar="ENDPOINT", help="The WebhookEndpoint.")],
    *,
    opts: Shared,
) -> None:
    """Deliver to a paused endpoint again (spec.active: true)."""
    _set_active(endpoint, True, opts)


def verify_with(secrets: list[str], headers: dict[str, str], body: bytes, tolerance: int) -> int:
    """The 1-based index of the secret that signed the delivery; raises InvalidSignature
    (or InvalidSecret) otherwise. Keys are tried one at a time only to say which one
    matched; the check itself is `signing.verify`, as the service signs."""
    for secret in secrets:
        signing.decode_secret(secret)  # a malformed secret is a usage error, not "invalid"
    last = signing.InvalidSignature("no secret to check the signature with")
    for index, secret in enumerate(secrets, start=1):
        try:
            signing.verify(secret, headers, body, tolerance=tolerance)
        except signing.InvalidSignature as exc:
            last = exc
            continue
        return index
    raise last


@_command()
def verify(
    payload: Annotated[
        str,
        typer.Option(
            "--payload",
            help="The body exactly as received: a file, or - for stdin.",
            show_default=False,
        ),
    ],
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            help="A whsec_ signing secret (repeatable: key 1, key 2, ...).",
            show_default=False,
        ),
    ] = None,
    secret_from: Annotated[
        str | None,
        typer.Option(
            "--secret-from",
            metavar="ENDPOINT",
            help="Read the secrets of this WebhookEndpoint from the cluster (key 1: current,"
            " key 2: previous, during a rotation's grace period).",
            show_default=False,
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            "-H",
            help="A received header, 'webhook-id: msg_...' (repeatable).",
            show_default=False,
        ),
    ] = None,
    headers_file: Annotated[
        str | None,
        typer.Option(
            "--headers-file",
            help="Received headers: 'Name: value' lines (as curl -v or a request dump prints"
            " them) or a JSON object.",
            show_default=False,
        ),
    ] = None,
    tolerance: Annotated[
        str,
        typer.Option(
            "--tolerance",
            help="How far webhook-timestamp may be from now: seconds or a duration (10m).",
        ),
    ] = str(signing.DEFAULT_TOLERANCE),
    no_time_check: Annotated[
        bool,
        typer.Option(
            "--no-time-check", help="Ignore webhook-timestamp's age (checking an old delivery)."
        ),
    ] = False,
    *,
    opts: Shared,
) -> None:
    """Check a received delivery's signature; exit 0 when valid, 1 when not.

    Give the body exactly as received and its webhook-id, webhook-timestamp and
    webhook-signature headers."""
    if bool(secret) == bool(secret_from):
        raise _bad("give --secret whsec_... or --secret-from ENDPOINT (one of them)")
    if not header and not headers_file:
        raise _bad(
            "give the received headers: --header 'webhook-id: ...' (repeatable) or --headers-file"
        )
    if headers_file == "-" and payload == "-":
        raise _bad("--payload and --headers-file cannot both be read from stdin")
    try:
        window = NO_TIME_LIMIT if no_time_check else parsing.parse_tolerance(tolerance)
        headers: dict[str, str] = {}
        if headers_file:
            text = _read_input(headers_file, "--headers-file").decode("utf-8", errors="replace")
            headers.update(parsing.parse_headers_text(text))
        headers.update(parsing.parse_headers(header or []))
    except ValueError as exc:
        raise _bad(str(exc)) from None
    body = _read_input(payload, "--payload")
    if secret_from:
        from webhook_operator.plugin import kube

        target = opts.target()
        secrets = kube.signing_secrets(_kube(target), target.namespace, secret_from).secrets
    else:
        secrets = list(secret or [])
    try:
        key = verify_with(secrets, headers, body, window)
    except signing.InvalidSecret as exc:
        raise _bad(f"bad secret: {exc}") from None
    except signing.InvalidSignature as exc:
        reason = str(exc)
        if body.endswith(b"\n") and reason.startswith("no signature matched"):
            reason += (
                " (the payload ends with a newline: if an editor or `echo` added it, the"
                " signed body did not have it)"
            )
        if opts.output is Output.JSON:
            render.print_json({"valid": False, "reason": reason})
        else:
            render.error(f"invalid: {reason}")
        raise typer.Exit(Exit.NEGATIVE) from None
    if opts.output is Output.JSON:
        render.print_json({"valid": True, "key": key})
    else:
        render.say(f"valid (signed with key {key})")


class Scope(StrEnum):
    # The portal's ticket scopes; not imported from the portal, which the plugin only calls.
    MANAGE = "manage"
    READ = "read"


DEFAULT_SUBJECT = "kubectl"


def ticket_subject(asked: str | None, target: Target) -> str:
    """Who the ticket is for: --subject, else who the credentials say the caller is (the
    portal's audit Events name it), else "kubectl"."""
    if asked is None:
        return target.caller or DEFAULT_SUBJECT
    try:
        return parsing.check_subject(asked)
    except ValueError as exc:
        raise _bad(str(exc)) from None


@_command()
def portal(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The WebhookApp.")],
    scope: Annotated[
        Scope,
        typer.Option(
            "--scope",
            help="manage: read and change the app's endpoints; read: look only.",
            case_sensitive=False,
        ),
    ] = Scope.MANAGE,
    ttl: Annotated[
        str | None,
        typer.Option(
            "--ttl",
            help="How long the ticket works, e.g. 15m (default: the portal's, 15m unless"
            " configured; at most its cap, 1h unless configured).",
            show_default=False,
        ),
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(
            "--subject",
            help="Who the ticket is for, as named in the portal's audit Events, e.g."
            " acme-corp/alice@example.com (default: the token's user, else kubectl).",
            show_default=False,
        ),
    ] = None,
    portal_url: Annotated[
        str | None,
        typer.Option(
            "--portal-url",
            envvar=PORTAL_ENV,
            help="URL of the portal (default: the dev playground's, if running).",
            show_default=False,
        ),
    ] = None,
    *,
    opts: Shared,
) -> None:
    """Open an app's customer portal: issue an access ticket and print the portal's URL.

    The ticket is issued with your credentials (RBAC verb issue-tickets on the
    WebhookApp). The URL carries it: whoever has the URL can use the portal until the
    ticket expires."""
    try:
        lifetime = parsing.parse_ttl(ttl) if ttl is not None else None
    except ValueError as exc:
        raise _bad(str(exc)) from None
    target = dataclasses.replace(opts.target(), portal_flag=portal_url, service="the portal")
    base, origin = target.portal
    who = ticket_subject(subject, target)
    with PortalClient(base, target.token, server_origin=origin) as client:
        answer = client.issue_ticket(
            target.namespace, app_name, scope=scope.value, ttl=lifetime, subject=who
        )
    if opts.output is Output.JSON:
        render.print_json(answer)
        return
    render.say(str(answer.get("portalUrl", "")))
    render.note(
        f"a {answer.get('scope', scope.value)} ticket for {answer.get('subject', who)} on"
        f" WebhookApp {app_name} in namespace {target.namespace}, valid until"
        f" {answer.get('expiresAt')}; the URL is the ticket: share it only with them"
    )


@_command()
def version() -> None:
    """Print the plugin's version."""
    print(__version__)
