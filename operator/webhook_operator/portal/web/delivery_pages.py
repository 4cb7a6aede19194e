"""The delivery pages: an endpoint's delivery log (filtered by status, paged by cursor),
one delivery with its attempts and payload, the payload as a file, resend and replay.

HTTP and HTML only: every read and every change calls delivery_actions.py (and the
endpoint header endpoint_actions.owned_endpoint / endpoint_rules.view), the same service
layer as the tenant API, so the page can neither see nor do more than the API allows. A
filter or a replay window the customer got wrong is said on the page itself; refusals
(another app's delivery, a read ticket's change) become the /problem page as elsewhere."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from webhook_operator.api import delivery_wire as w
from webhook_operator.http_api import inputs
from webhook_operator.http_api.errors import ApiError
from webhook_operator.http_api.openapi import Operation, Param
from webhook_operator.portal import delivery_actions as actions
from webhook_operator.portal import endpoint_rules
from webhook_operator.portal.context import Portal
from webhook_operator.portal.deliveries_api import payload_file
from webhook_operator.portal.endpoint_actions import owned_endpoint
from webhook_operator.portal.tenant import Tenant
from webhook_operator.portal.web.common import (
    HTML,
    PROBLEMS,
    TAG,
    Session,
    change,
    pages,
    redirect,
    render,
    session,
)
from webhook_operator.portal.wire import Endpoint

PAGE_SIZE = 50
STATUSES = tuple(s.value for s in w.DeliveryStatus)
# datetime-local sends minutes, or seconds when the browser's step allows them.
LOCAL_INPUT = "%Y-%m-%dT%H:%M"
REPLAY_DEFAULT = timedelta(hours=24)
# What the replay form offers, and what it replays when the customer changes nothing.
REPLAYABLE = (
    ("failed", "Failed, waiting for their next retry"),
    ("exhausted", "Gave up after every retry"),
    ("expired", "Expired: held (the endpoint paused or disabled) longer than its hold time"),
)
REPLAY_DEFAULT_STATUSES = ("failed", "exhausted")

PROBLEMS.update(
    {
        "InvalidName": (
            "This address does not work",
            "The address names no endpoint or delivery; follow the links on the page instead",
        ),
    }
)


# --- the list's query --------------------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    """What the deliveries page was asked for, and why it cannot be shown when it cannot."""

    statuses: tuple[str, ...] = ()
    cursor: str | None = None
    error: str | None = None

    @property
    def params(self) -> list[tuple[str, str]]:
        """The delivery service's query: the same parameters as the tenant API's."""
        params = [("limit", str(PAGE_SIZE))]
        if self.cursor is not None:
            params.append(("cursor", self.cursor))
        if self.statuses:
            params.append(("status", ",".join(self.statuses)))
        return params

    def link(self, cursor: str | None = None) -> str:
        """The query string of this filter at `cursor` (None: the newest page)."""
        query = [("status", s) for s in self.statuses]
        if cursor is not None:
            query.append(("cursor", cursor))
        return "?" + urlencode(query) if query else "?"


def list_query(query: MultiMapping[str]) -> ListQuery:
    """The filter and cursor of the address; a bad value is an error to show, not a 400."""
    try:
        statuses = tuple(s.value for s in w.statuses(query.getall("status", [])))
    except w.BadQuery as exc:
        return ListQuery(error=exc.message)
    cursor = query.get("cursor") or None
    if cursor is not None and not inputs.DELIVERY_ID.fullmatch(cursor):
        return ListQuery(statuses, error="That page link is not valid: start from the newest")
    return ListQuery(statuses, cursor)


def parse_page(raw: bytes) -> w.DeliveryPage:
    """The delivery service's page as the model it documents (502 when it is not)."""
    try:
        data: Any = json.loads(raw)
    except ValueError:
        data = None
    return actions.answer(w.DeliveryPage, data)


# --- one delivery -------------------------------------------------------------------------------


def pretty_payload(payload: str) -> str:
    """The payload indented for reading; as it is when it is not JSON. (The download gives
    the exact bytes: this is only for the eye.)"""
    try:
        return json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
    except ValueError:
        return payload


def resent_from(query: Mapping[str, str]) -> str | None:
    """The delivery this one was resent from (the notice after a resend), when the
    address names one."""
    value = query.get("resent") or None
    return value if value is not None and inputs.DELIVERY_ID.fullmatch(value) else None


# --- the replay window --------------------------------------------------------------------------


def local_input(moment: datetime) -> str:
    """A time as a datetime-local value, in UTC."""
    return moment.astimezone(UTC).strftime(LOCAL_INPUT)


def utc_input(raw: str, label: str) -> datetime:
    """A datetime-local value read as UTC (the form says so). ValueError with a message."""
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(f"{label} must be a date and time such as 2026-11-25T10:00") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass
class ReplayForm:
    """The replay form as sent, and what it means."""

    since: str
    until: str = ""
    statuses: tuple[str, ...] = REPLAY_DEFAULT_STATUSES
    error: str | None = None
    window: w.ReplayRequest | None = field(default=None, repr=False)


def replay_form(form: MultiMapping[str]) -> ReplayForm:
    """The window [since, until) and the statuses of a replay form, or the error to show
    with the form."""
    since_raw = (form.get("since") or "").strip()
    until_raw = (form.get("until") or "").strip()
    offered = {value for value, _ in REPLAYABLE}
    chosen = tuple(value for value in form.getall("statuses", []) if value in offered)
    sent = ReplayForm(since_raw, until_raw, chosen)
    if not since_raw:
        sent.error = "Say since when to replay"
        return sent
    if not chosen:
        sent.error = "Choose which deliveries to replay"
        return sent
    try:
        since = utc_input(since_raw, "Since")
        until = utc_input(until_raw, "Until") if until_raw else None
    except ValueError as exc:
        sent.error = str(exc)
        return sent
    if until is not None and until <= since:
        sent.error = "Until must be later than since"
        return sent
    statuses = [w.DeliveryStatus(value) for value in chosen]
    sent.window = w.ReplayRequest(since=since, until=until, statuses=statuses)
    return sent


# --- the pages ----------------------------------------------------------------------------------


def endpoint_header(portal: Portal, tenant: Tenant, name: str) -> Endpoint:
    """The endpoint the page is about, as its header shows it (404/403 when not the
    ticket's app's)."""
    return endpoint_rules.view(owned_endpoint(portal, tenant, name))


def replay_page(
    current: Session,
    endpoint: Endpoint,
    sent: ReplayForm,
    replayed: int | None = None,
) -> web.Response:
    return render(
        "replay.html",
        session=current,
        active="endpoints",
        endpoint=endpoint,
        form=sent,
        replayable=REPLAYABLE,
        replayed=replayed,
    )


def operations(portal: Portal) -> list[Operation]:
    @pages
    async def endpoint_deliveries_page(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request)
        name = inputs.path_name(request, "endpoint")
        endpoint = endpoint_header(portal, current.tenant, name)
        query = list_query(request.query)
        page: w.DeliveryPage | None = None
        error = query.error
        if error is None:
            try:
                raw = await actions.endpoint_deliveries(portal, current.tenant, name, query.params)
            except ApiError as exc:
                # A cursor the service does not know, say: the page stays, with the reason.
                if exc.status != 400:
                    raise
                error = exc.message
            else:
                page = parse_page(raw)
        return render(
            "deliveries.html",
            session=current,
            active="endpoints",
            endpoint=endpoint,
            query=query,
            statuses=STATUSES,
            page=page,
            error=error,
        )

    @pages
    async def delivery_detail_page(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request)
        found = await actions.delivery(portal, current.tenant, inputs.path_name(request, "id"))
        return render(
            "delivery.html",
            session=current,
            active="endpoints",
            delivery=found,
            payload=pretty_payload(found.payload),
            resent_from=resent_from(request.query),
        )

    @pages
    async def delivery_payload_download(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request)
        found = await actions.delivery(portal, current.tenant, inputs.path_name(request, "id"))
        response = payload_file(found)
        response.headers["Cache-Control"] = "no-store"
        return response

    @pages
    async def delivery_resend_form(request: web.Request) -> web.StreamResponse:
        current, _ = await change(portal, request)
        delivery_id = inputs.path_name(request, "id")
        result = await actions.resend(portal, current.tenant, delivery_id)
        return redirect(f"/deliveries/{result.delivery_id}?resent={delivery_id}", current)

    @pages
    async def replay_window_page(request: web.Request) -> web.StreamResponse:
        current = await session(portal, request)
        endpoint = endpoint_header(portal, current.tenant, inputs.path_name(request, "endpoint"))
        since = local_input(datetime.fromtimestamp(portal.clock(), UTC) - REPLAY_DEFAULT)
        return replay_page(current, endpoint, ReplayForm(since))

    @pages
    async def replay_window_form(request: web.Request) -> web.StreamResponse:
        current, form = await change(portal, request)
        name = inputs.path_name(request, "endpoint")
        endpoint = endpoint_header(portal, current.tenant, name)
        sent = replay_form(form)
        if sent.window is None:
            return replay_page(current, endpoint, sent)
        try:
            result = await actions.replay(portal, current.tenant, name, sent.window)
        except ApiError as exc:
            # The service's own check of the window (BadUntil...): said with the form.
            if exc.status not in (400, 422):
                raise
            sent.error = exc.message
            return replay_page(current, endpoint, sent)
        return replay_page(current, endpoint, sent, replayed=result.replayed)

    listing = (
        Param(
            "status",
            "pending, failed, delivered, exhausted, held, cancelled or expired; repeat",
        ),
        Param("cursor", "`next` of the previous page (the Older link)"),
    )
    refusals = (401, 403, 404)
    return [
        Operation(
            "GET",
            "/endpoints/{endpoint}/deliveries",
            endpoint_deliveries_page,
            "The endpoint's deliveries page: the 50 most recent, newest first, by status",
            params=listing,
            content_type=HTML,
            errors=refusals,
            tag=TAG,
        ),
        Operation(
            "GET",
            "/deliveries/{id}",
            delivery_detail_page,
            "One delivery's page: its attempts and its payload",
            params=(Param("resent", "The delivery this one was resent from (a notice)"),),
            content_type=HTML,
            errors=refusals,
            tag=TAG,
        ),
        Operation(
            "GET",
            "/deliveries/{id}/download",
            delivery_payload_download,
            "The delivery's payload exactly as sent, as a file named after the event",
            content_type="application/json",
            errors=refusals,
            tag=TAG,
        ),
        Operation(
            "POST",
            "/deliveries/{id}/resend",
            delivery_resend_form,
            "Resend the delivery (manage tickets); on to the new delivery's page",
            status=303,
            content_type=HTML,
            errors=(*refusals, 413),
            tag=TAG,
        ),
        Operation(
            "GET",
            "/endpoints/{endpoint}/replay",
            replay_window_page,
            "The replay form of an endpoint's failed and exhausted deliveries",
            content_type=HTML,
            errors=refusals,
            tag=TAG,
        ),
        Operation(
            "POST",
            "/endpoints/{endpoint}/replay",
            replay_window_form,
            "Replay the endpoint's failed and exhausted deliveries since a time (manage"
            " tickets); the page says how many",
            content_type=HTML,
            errors=(*refusals, 413),
            tag=TAG,
        ),
    ]
