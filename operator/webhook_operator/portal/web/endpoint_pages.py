"""The endpoints pages: the list, a new endpoint, one endpoint's detail, and its changes
(edit, rotate the secret, delete, a test ping) plus how to verify signatures.

Every action calls endpoint_actions.py or delivery_actions.py, the same service layer as
the tenant API: these handlers only turn forms into requests and answers into pages. A
signing secret in full appears only in the page that answers the POST that made it (never
in an address, never kept), so reloading or going back cannot show it again."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy
from pydantic import ValidationError

from webhook_operator.api import delivery_wire as w
from webhook_operator.api import names
from webhook_operator.durations import parse_duration
from webhook_operator.http_api import inputs
from webhook_operator.http_api.errors import ApiError
from webhook_operator.http_api.openapi import Operation
from webhook_operator.portal import delivery_actions, endpoint_actions, endpoint_rules, overview
from webhook_operator.portal.context import Portal
from webhook_operator.portal.web.common import (
    HTML,
    PROBLEMS,
    TAG,
    Session,
    badge,
    change,
    pages,
    redirect,
    render,
    session,
    when,
)
from webhook_operator.portal.wire import EndpointCreate, EndpointUpdate

# A test ping's first attempt is usually back within a second; a page waits this long at
# most, then says it is still on its way.
PING_WAIT = 10.0
PING_POLL = 0.3
DEFAULT_GRACE = "24h"
OTHER_CATEGORY = "Other"
# Wildcards and types typed by hand: commas, spaces or new lines between them.
_SEPARATORS = re.compile(r"[\s,]+")
_LABELS = {"url": "URL", "events": "Events", "name": "Name", "description": "Description"}

# Form refusals are shown in the form; these are refusals met on the way to a page.
PROBLEMS.update(
    {
        "RotationPending": (
            "The new secret is not ready",
            "The rotation was requested but the operator has not carried it out yet; ask the"
            " platform team to check the operator",
        ),
        "InvalidName": ("No such endpoint", "That is not the name of an endpoint"),
        "PortalNotAllowed": (
            "The platform refused",
            "The platform has not given this page the permission it needs; ask the platform team",
        ),
        "DeliveryServiceAnswer": (
            "Deliveries cannot be read now",
            "The delivery service answered in a way this page does not understand",
        ),
        "Conflict": (
            "Changed meanwhile",
            "Someone changed that endpoint at the same time; open it again and repeat",
        ),
    }
)


# --- forms (pure) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointForm:
    """What the endpoint form holds, as typed: kept when the form is shown again."""

    url: str = ""
    description: str = ""
    events: tuple[str, ...] = ()
    active: bool = True
    name: str = ""


def split_patterns(text: str) -> list[str]:
    return [part for part in _SEPARATORS.split(text.strip()) if part]


def read_form(form: MultiDictProxy[str]) -> EndpointForm:
    """The form's fields: checked event types first, then the ones typed by hand, each
    once. An unchecked checkbox is not sent, so `active` is whether it was."""
    events = dict.fromkeys([*form.getall("events", []), *split_patterns(form.get("more", ""))])
    return EndpointForm(
        url=form.get("url", "").strip(),
        description=form.get("description", "").strip(),
        events=tuple(events),
        active=form.get("active") == "on",
        name=form.get("name", "").strip(),
    )


def create_request(values: EndpointForm) -> EndpointCreate:
    return EndpointCreate(
        url=values.url,
        events=list(values.events),
        name=values.name or None,
        description=values.description or None,
        active=values.active,
    )


def update_request(values: EndpointForm, shown_active: bool) -> EndpointUpdate:
    """Every field the form shows is sent (an emptied description is removed), but
    `active` only when the toggle was moved: a disabled endpoint shows it off, and
    saving another change must not pause it."""
    asked: dict[str, Any] = {
        "url": values.url,
        "events": list(values.events),
        "description": values.description or None,
    }
    if values.active != shown_active:
        asked["active"] = values.active
    return EndpointUpdate(**asked)


def shown_active(obj: dict[str, Any]) -> bool:
    """The toggle as the form shows it: off when paused or disabled automatically, so that
    turning it on is what resumes or re-enables."""
    view = endpoint_rules.view(obj)
    return view.active and not endpoint_rules.auto_disabled(obj)


def validation_message(exc: ValidationError) -> str:
    """A refused field as a sentence, naming the field as the form labels it."""
    first = exc.errors()[0]
    where = first.get("loc") or ()
    label = _LABELS.get(str(where[0]), str(where[0])) if where else "The form"
    return f"{label}: {first.get('msg', 'not valid')}"


@dataclass
class Group:
    category: str
    types: list[overview.CatalogEventType] = field(default_factory=list)


def event_groups(catalog: overview.Catalog) -> list[Group]:
    """The types an endpoint may subscribe to, by category in the catalog's order of
    categories (sorted), types in the app's order; types without one last, as Other."""
    groups = {c: Group(c) for c in catalog.categories}
    for event in catalog.event_types:
        if event.subscribable:
            key = event.category or OTHER_CATEGORY
            groups.setdefault(key, Group(key)).types.append(event)
    return [g for g in groups.values() if g.types]


def typed_by_hand(events: Iterable[str], groups: list[Group]) -> str:
    """The chosen events no checkbox shows (wildcards, say), for the free-text field."""
    boxes = {t.name for g in groups for t in g.types}
    return ", ".join(e for e in events if e not in boxes)


def grace_words(raw: str | None) -> str:
    """How long an old secret keeps verifying, in words: '24 hours', '30 minutes'."""
    try:
        grace = parse_duration(raw or DEFAULT_GRACE)
    except ValueError:
        grace = parse_duration(DEFAULT_GRACE)
    return duration_words(grace)


def duration_words(span: timedelta) -> str:
    """A span in its largest whole unit: '24 hours', '90 minutes'; '' for none."""
    seconds = int(span.total_seconds())
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds > 0 and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return ""


def grace_period(obj: dict[str, Any]) -> str | None:
    rotation = ((obj.get("spec") or {}).get("secretRotation")) or {}
    value = rotation.get("gracePeriod")
    return str(value) if value else None


# --- how to verify ---------------------------------------------------------------------------

SECRET_PLACEHOLDER = "whsec_YOUR_SIGNING_SECRET"


@dataclass(frozen=True)
class Snippet:
    language: str
    install: str
    code: str


# Shown as text (autoescaped): a placeholder stands for the secret, never the real one.
SNIPPETS = (
    Snippet(
        "Python",
        "pip install standardwebhooks",
        f"""from standardwebhooks import Webhook, WebhookVerificationError

# Load it from your secret store; never commit it.
webhook = Webhook("{SECRET_PLACEHOLDER}")


def handle(body: bytes, headers: dict[str, str]) -> int:
    try:
        # The exact bytes received: a parsed and re-serialized body no longer matches.
        event = webhook.verify(body, {{
            "webhook-id": headers["webhook-id"],
            "webhook-timestamp": headers["webhook-timestamp"],
            "webhook-signature": headers["webhook-signature"],
        }})
    except (KeyError, WebhookVerificationError):
        return 400  # not signed with your secret, altered, or too old
    print(event["type"], event["data"])
    return 204
""",
    ),
    Snippet(
        "JavaScript / TypeScript",
        "npm install standardwebhooks",
        f"""import express from "express";
import {{ Webhook }} from "standardwebhooks";

// Load it from your secret store; never commit it.
const webhook = new Webhook("{SECRET_PLACEHOLDER}");
const app = express();

// express.raw keeps the exact bytes received: the signature covers them.
app.post("/webhooks", express.raw({{ type: "application/json" }}), (req, res) => {{
  try {{
    const event = webhook.verify(req.body, {{
      "webhook-id": req.header("webhook-id") ?? "",
      "webhook-timestamp": req.header("webhook-timestamp") ?? "",
      "webhook-signature": req.header("webhook-signature") ?? "",
    }});
    console.log(event);
    res.sendStatus(204);
  }} catch (err) {{
    res.sendStatus(400); // not signed with your secret, altered, or too old
  }}
}});
""",
    ),
    Snippet(
        "Go",
        "go get github.com/standard-webhooks/standard-webhooks/libraries",
        f"""package main

import (
	"io"
	"net/http"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func main() {{
	// Load it from your secret store; never commit it.
	webhook, err := standardwebhooks.NewWebhook("{SECRET_PLACEHOLDER}")
	if err != nil {{
		panic(err)
	}}
	http.HandleFunc("/webhooks", func(w http.ResponseWriter, r *http.Request) {{
		body, err := io.ReadAll(r.Body)
		if err != nil {{
			http.Error(w, "cannot read the body", http.StatusBadRequest)
			return
		}}
		// Reads webhook-id, webhook-timestamp and webhook-signature from r.Header.
		if err := webhook.Verify(body, r.Header); err != nil {{
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}}
		w.WriteHeader(http.StatusNoContent)
	}})
	http.ListenAndServe(":8080", nil)
}}
""",
    ),
)


# --- pages ------------------------------------------------------------------------------------


def operations(portal: Portal) -> list[Operation]:
    def catalog_groups(current: Session) -> list[Group]:
        tenant = current.tenant
        return event_groups(overview.catalog(tenant.app_name, tenant.spec, tenant.portal))

    def form_page(
        current: Session,
        values: EndpointForm,
        error: str | None = None,
        name: str | None = None,
        disabled: tuple[str, str | None] | None = None,
        shown: bool | None = None,
    ) -> web.Response:
        groups = catalog_groups(current)
        return render(
            "endpoint_form.html",
            session=current,
            active="endpoints",
            values=values,
            error=error,
            groups=groups,
            chosen=set(values.events),
            more=typed_by_hand(values.events, groups),
            editing=name,
            disabled=disabled,
            shown=shown,
        )

    def secret_page(current: Session, view: Any, rotated: bool) -> web.Response:
        return render(
            "endpoint_secret.html",
            session=current,
            active="endpoints",
            endpoint=view,
            rotated=rotated,
        )

    def changeable(current: Session, name: str) -> dict[str, Any]:
        """The endpoint, if this page may show controls that change it."""
        obj = endpoint_actions.owned_endpoint(portal, current.tenant, name)
        endpoint_actions.changeable(obj)
        return obj

    @pages
    async def endpoints(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request)
        tenant = current.tenant
        views = sorted(
            (
                endpoint_rules.view(obj)
                for obj in portal.directory.app_endpoints(tenant.namespace, tenant.app_name)
            ),
            key=lambda v: v.name,
        )
        return render(
            "endpoints.html",
            session=current,
            active="endpoints",
            endpoints=views,
            expires=when(datetime.fromtimestamp(tenant.ticket.expires_at, UTC)),
        )

    @pages
    async def new_form(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request, write=True)
        return form_page(current, EndpointForm())

    @pages
    async def create(request: web.Request) -> web.StreamResponse:
        current, form = await change(portal, request)
        values = read_form(form)
        try:
            made = await endpoint_actions.create(portal, current.tenant, create_request(values))
        except ValidationError as exc:
            return form_page(current, values, validation_message(exc))
        except ApiError as exc:
            if exc.status >= 500:
                raise
            return form_page(current, values, exc.message)
        return secret_page(current, made, rotated=False)

    @pages
    async def detail(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request)
        name = inputs.path_name(request, "endpoint")
        view = await endpoint_actions.read(portal, current.tenant, name)
        obj = endpoint_actions.owned_endpoint(portal, current.tenant, name)
        return render(
            "endpoint_detail.html",
            session=current,
            active="endpoints",
            endpoint=view,
            grace=grace_words(grace_period(obj)),
            portal_managed=view.managed_by == names.PORTAL_MANAGER,
        )

    def disabled_state(obj: dict[str, Any]) -> tuple[str, str | None] | None:
        """Why the endpoint does not deliver now, for the note next to the toggle."""
        view = endpoint_rules.view(obj)
        if view.health != "Disabled" and view.active:
            return None
        return badge(view) if view.health == "Disabled" else ("Disabled", "paused")

    @pages
    async def edit_form(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request, write=True)
        name = inputs.path_name(request, "endpoint")
        obj = changeable(current, name)
        view = endpoint_rules.view(obj)
        values = EndpointForm(
            url=view.url,
            description=view.description or "",
            events=tuple(view.events),
            active=shown_active(obj),
            name=view.name,
        )
        return form_page(
            current, values, name=name, disabled=disabled_state(obj), shown=values.active
        )

    @pages
    async def edit(request: web.Request) -> web.StreamResponse:
        current, form = await change(portal, request)
        name = inputs.path_name(request, "endpoint")
        obj = changeable(current, name)
        values = replace(read_form(form), name=name)
        # As the form showed it: had the endpoint been disabled since, leaving the toggle
        # on is not turning it on.
        shown = form.get("shown_active", "on" if shown_active(obj) else "off") == "on"
        try:
            asked = update_request(values, shown)
            await endpoint_actions.update(portal, current.tenant, name, asked)
        except ValidationError as exc:
            return form_page(
                current, values, validation_message(exc), name, disabled_state(obj), shown
            )
        except ApiError as exc:
            if exc.status >= 500 or exc.reason in ("EndpointNotFound", "OutsideTicket"):
                raise
            return form_page(current, values, exc.message, name, disabled_state(obj), shown)
        return redirect(f"/endpoints/{name}", current)

    @pages
    async def rotate_form(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request, write=True)
        name = inputs.path_name(request, "endpoint")
        obj = changeable(current, name)
        return render(
            "endpoint_confirm.html",
            session=current,
            active="endpoints",
            endpoint_name=name,
            action="rotate",
            grace=grace_words(grace_period(obj)),
        )

    @pages
    async def rotate(request: web.Request) -> web.StreamResponse:
        current, _ = await change(portal, request)
        name = inputs.path_name(request, "endpoint")
        rotated = await endpoint_actions.rotate(portal, current.tenant, name)
        return secret_page(current, rotated, rotated=True)

    @pages
    async def delete_form(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request, write=True)
        name = inputs.path_name(request, "endpoint")
        changeable(current, name)
        return render(
            "endpoint_confirm.html",
            session=current,
            active="endpoints",
            endpoint_name=name,
            action="delete",
            grace="",
        )

    @pages
    async def delete(request: web.Request) -> web.StreamResponse:
        current, _ = await change(portal, request)
        name = inputs.path_name(request, "endpoint")
        await endpoint_actions.delete(portal, current.tenant, name)
        return redirect("/endpoints", current)

    async def first_attempt(current: Session, delivery_id: str) -> w.DeliveryDetail | None:
        """The ping's delivery once its first attempt is recorded, or its latest state
        when the wait runs out (None when it could not be read at all)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PING_WAIT
        found: w.DeliveryDetail | None = None
        while True:
            try:
                found = await delivery_actions.delivery(portal, current.tenant, delivery_id)
            except ApiError as exc:
                # Written by the delivery service a moment after the answer, at worst.
                if exc.reason != "DeliveryNotFound":
                    raise
            if found is not None and (found.attempt_log or found.status == w.DeliveryStatus.HELD):
                return found
            if loop.time() >= deadline:
                return found
            await asyncio.sleep(PING_POLL)

    @pages
    async def ping(request: web.Request) -> web.StreamResponse:
        current, _ = await change(portal, request)
        name = inputs.path_name(request, "endpoint")
        sent = await delivery_actions.ping(portal, current.tenant, name)
        found = None if sent.held else await first_attempt(current, sent.delivery_id)
        attempt = found.attempt_log[0] if found is not None and found.attempt_log else None
        return render(
            "endpoint_ping.html",
            session=current,
            active="endpoints",
            endpoint_name=name,
            sent=sent,
            held=sent.held or (found is not None and found.status == w.DeliveryStatus.HELD),
            attempt=attempt,
        )

    @pages
    async def verify(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request)
        name = inputs.path_name(request, "endpoint")
        view = endpoint_rules.view(endpoint_actions.owned_endpoint(portal, current.tenant, name))
        return render(
            "endpoint_verify.html",
            session=current,
            active="endpoints",
            endpoint=view,
            snippets=SNIPPETS,
            placeholder=SECRET_PLACEHOLDER,
        )

    item = "/endpoints/{endpoint}"

    def page(method: str, path: str, handler: Any, summary: str, status: int = 200) -> Operation:
        errors = (401, 403, 404, 409, 413) if method == "POST" else (401, 403, 404)
        return Operation(
            method,
            path,
            handler,
            summary,
            status=status,
            content_type=HTML,
            errors=errors,
            tag=TAG,
        )

    return [
        page("GET", "/endpoints", endpoints, "The endpoints list page of the session's app"),
        # Before the item's routes: "new" is not an endpoint's name here.
        page("GET", "/endpoints/new", new_form, "The form for a new endpoint"),
        page(
            "POST",
            "/endpoints/new",
            create,
            "Create an endpoint; the answer shows its signing secret, once",
        ),
        page("GET", item, detail, "One endpoint: its settings, health and controls"),
        page("GET", item + "/edit", edit_form, "The form that changes an endpoint"),
        page("POST", item + "/edit", edit, "Change an endpoint, then show it", status=303),
        page("GET", item + "/rotate", rotate_form, "Confirm a rotation of the signing secret"),
        page("POST", item + "/rotate", rotate, "Rotate the signing secret; shows it, once"),
        page("GET", item + "/delete", delete_form, "Confirm the deletion of an endpoint"),
        page("POST", item + "/delete", delete, "Delete an endpoint", status=303),
        page("POST", item + "/ping", ping, "Send a test ping and show its first attempt"),
        page("GET", item + "/verify", verify, "How to verify the endpoint's signatures"),
    ]
