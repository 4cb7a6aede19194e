"""The tenant API for deliveries, as a customer holding a ticket uses it, against the real
control plane, operator, delivery service and portal: the delivery log filtered and paged,
one delivery with its attempts, its payload downloaded byte for byte as the receiver got
it, resend, replay within a window, a ping verified with the public `standardwebhooks`
library, an audit Event for each change; and every way of reaching outside the ticket
refused with a reason."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from kubernetes import client
from standardwebhooks.webhooks import Webhook

from tests.harness import Cluster, DeliveryProcess, PortalProcess, Producer, Receiver, eventually
from tests.integration.portal_support import (
    apply_endpoint,
    backend,
    customer,
    make_app,
    ready,
    ticket,
)

pytestmark = pytest.mark.integration
SUBJECT = "acme-corp/alice@example.com"
NO_ID = "dlv_01J00000000000000000000000"


def signing_secret(cluster: Cluster, namespace: str, name: str) -> str:
    secret = client.CoreV1Api(cluster.api).read_namespaced_secret(
        f"{name}-signing-secret", namespace
    )
    return base64.b64decode((secret.data or {})["secret"]).decode()


def emit(
    svc: DeliveryProcess, namespace: str, producer: Producer, app: str, type_: str, ref: str
) -> str:
    response = httpx.post(
        f"{svc.url}/v1/namespaces/{namespace}/apps/{app}/events",
        json={"type": type_, "data": {"ref": ref, "note": "spät ☃ \u2028"}},
        headers=producer.headers,
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["eventId"])


def arrived(receiver: Receiver, path: str, event_id: str) -> list[dict[str, Any]]:
    return [r for r in receiver.received(path) if r["headers"].get("webhook-id") == event_id]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def created(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["createdAt"].replace("Z", "+00:00"))


def portal_events(cluster: Cluster, namespace: str, name: str) -> list[Any]:
    listed = client.CoreV1Api(cluster.api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [e for e in listed.items if e.source and e.source.component == "webhook-operator-portal"]


def error(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, (response.request.url, response.text)
    found: dict[str, Any] = response.json()["error"]
    assert found["reason"] == reason, found
    return found


def paced(portal: PortalProcess, token: str) -> httpx.Client:
    """A customer's client that stays within a ticket's request rate (10/s), so that the
    many requests of one test are not answered 429."""
    api = customer(portal, token)
    api.event_hooks["request"].append(lambda _: time.sleep(0.11))
    return api


def wait_for_the_portal(api: httpx.Client, endpoint: str) -> None:
    """The portal knows endpoints from its watch: a just-applied one takes a moment."""
    eventually(
        lambda: api.get(f"/endpoints/{endpoint}/deliveries").status_code == 200,
        what=f"the portal sees endpoint {endpoint}",
    )


@pytest.fixture
def other_namespace(cluster: Cluster, namespace: str) -> Iterator[str]:
    name = f"{namespace[:50]}-x{secrets.token_hex(2)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def test_a_customer_reads_and_acts_on_deliveries(
    cluster: Cluster,
    namespace: str,
    portal: PortalProcess,
    delivery_service: DeliveryProcess,
    receiver: Receiver,
) -> None:
    make_app(cluster, namespace)
    # A failed delivery is retried in 30 minutes: long after this test.
    retry = {"schedule": ["30m"]}
    apply_endpoint(cluster, namespace, "orders", receiver.url("/orders"), app="shop", retry=retry)
    ready(cluster, namespace, "orders")
    producer = Producer(cluster, namespace, ["shop"])
    # The first delivery fails (and waits for its retry); the others succeed.
    receiver.respond("/orders", (500, {}, 0.0), (204, {}, 0.0))
    first = emit(delivery_service, namespace, producer, "shop", "invoice.paid", "first")
    eventually(lambda: arrived(receiver, "/orders", first), what="the first attempt")
    later = [
        emit(delivery_service, namespace, producer, "shop", type_, ref)
        for type_, ref in (
            ("invoice.created", "second"),
            ("invoice.paid", "third"),
            ("invoice.paid", "fourth"),
        )
    ]
    eventually(lambda: all(arrived(receiver, "/orders", e) for e in later), what="the later events")

    token = ticket(
        portal, backend(cluster, namespace, ["shop"]), namespace, "shop", subject=SUBJECT
    )
    with paced(portal, token) as api:
        wait_for_the_portal(api, "orders")

        def listed(**params: Any) -> list[dict[str, Any]]:
            page = api.get("/endpoints/orders/deliveries", params=params)
            assert page.status_code == 200, page.text
            items: list[dict[str, Any]] = page.json()["items"]
            return items

        def settled() -> list[dict[str, Any]] | None:
            items = listed()
            statuses = [i["status"] for i in items]
            return items if statuses == ["delivered"] * 3 + ["failed"] else None

        everything: list[dict[str, Any]] = eventually(settled, what="four settled")  # type: ignore[assignment]
        assert [i["eventId"] for i in everything] == [*reversed(later), first]
        assert {i["app"] for i in everything} == {"shop"}

        # Filters: status, event type, both, repeated and comma-separated.
        assert [i["eventId"] for i in listed(status="failed")] == [first]
        paid = listed(eventType="invoice.paid")
        assert [i["eventId"] for i in paid] == [later[2], later[1], first]
        delivered_paid = listed(eventType="invoice.paid", status="delivered")
        assert [i["eventId"] for i in delivered_paid] == [later[2], later[1]]
        assert [i["eventId"] for i in listed(eventType="invoice.created")] == [later[0]]
        both = api.get(
            "/endpoints/orders/deliveries",
            params=[("eventType", "invoice.created"), ("eventType", "invoice.paid")],
        ).json()["items"]
        assert len(both) == 4
        assert len(listed(status="failed,delivered")) == 4

        # Paging: newest first, each delivery once.
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(5):
            page = api.get(
                "/endpoints/orders/deliveries",
                params={"limit": 3, **({"cursor": cursor} if cursor else {})},
            ).json()
            seen += [i["id"] for i in page["items"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == [i["id"] for i in everything]

        # One delivery: attempts and payload.
        failed_id = everything[3]["id"]
        detail = api.get(f"/deliveries/{failed_id}").json()
        assert (detail["eventId"], detail["status"], detail["endpoint"]) == (
            first,
            "failed",
            "orders",
        )
        assert [a["httpStatus"] for a in detail["attemptLog"]] == [500]
        assert json.loads(detail["payload"])["data"]["ref"] == "first"

        # The payload as a file: exactly the bytes the receiver got (and signed).
        third = everything[1]
        download = api.get(f"/deliveries/{third['id']}", params={"download": "1"})
        assert download.status_code == 200, download.text
        assert download.headers["Content-Type"].startswith("application/json")
        assert (
            download.headers["Content-Disposition"]
            == f'attachment; filename="{third["eventId"]}.json"'
        )
        [got] = arrived(receiver, "/orders", third["eventId"])
        assert download.content == got["body"]
        assert api.get(f"/deliveries/{third['id']}").json()["payload"].encode() == got["body"]

        # Resend: the same event to the same endpoint again, under a new delivery id.
        resent = api.post(f"/deliveries/{third['id']}/resend")
        assert resent.status_code == 202, resent.text
        copy = resent.json()["deliveryId"]
        assert copy != third["id"]
        eventually(lambda: len(arrived(receiver, "/orders", third["eventId"])) == 2, what="resent")
        assert listed()[0]["id"] == copy

        # Replay within [since, until): the failed first delivery only, not later ones.
        first_at = created(everything[3])
        window = {"since": rfc3339(first_at), "until": rfc3339(created(everything[2]))}
        # Only expired ones (held past the endpoint's holdFor): none here.
        expired = api.post("/endpoints/orders/replay", json={**window, "statuses": ["expired"]})
        assert expired.status_code == 202, expired.text
        assert expired.json() == {"replayed": 0}
        replayed = api.post("/endpoints/orders/replay", json=window)
        assert replayed.status_code == 202, replayed.text
        assert replayed.json() == {"replayed": 1}
        eventually(lambda: len(arrived(receiver, "/orders", first)) == 2, what="replayed")
        empty = {"since": rfc3339(first_at), "until": rfc3339(first_at)}
        assert api.post("/endpoints/orders/replay", json=empty).json() == {"replayed": 0}

        # Ping: signed with the endpoint's secret, as the public library checks it.
        pinged = api.post("/endpoints/orders/ping")
        assert pinged.status_code == 202, pinged.text
        ping = pinged.json()
        assert ping["held"] is False
        eventually(lambda: arrived(receiver, "/orders", ping["eventId"]), what="the ping")
        [request] = arrived(receiver, "/orders", ping["eventId"])
        body = Webhook(signing_secret(cluster, namespace, "orders")).verify(
            request["body"], request["headers"]
        )
        assert body["type"] == "webhook.ping"

        # Each change is an Event on the endpoint naming who made it; never the ticket.
        events = portal_events(cluster, namespace, "orders")
        reasons = {e.reason for e in events}
        assert {"PortalResend", "PortalReplay", "PortalPing"} <= reasons, reasons
        for event in events:
            assert SUBJECT in event.message
            assert token not in event.message
            assert event.type == "Normal"
        [ping_event] = [e for e in events if e.reason == "PortalPing"]
        assert ping["deliveryId"] in ping_event.message
        assert token not in portal.log()


def test_reaching_outside_the_ticket_is_refused(
    cluster: Cluster,
    namespace: str,
    other_namespace: str,
    portal: PortalProcess,
    delivery_service: DeliveryProcess,
    receiver: Receiver,
) -> None:
    make_app(cluster, namespace)
    make_app(cluster, namespace, name="rival")
    make_app(cluster, other_namespace)
    apply_endpoint(cluster, namespace, "orders", receiver.url("/orders"), app="shop")
    apply_endpoint(cluster, namespace, "theirs", receiver.url("/theirs"), app="rival")
    apply_endpoint(cluster, other_namespace, "elsewhere", receiver.url("/elsewhere"), app="shop")
    for ns, name in ((namespace, "orders"), (namespace, "theirs"), (other_namespace, "elsewhere")):
        ready(cluster, ns, name)
    producer = Producer(cluster, namespace, ["shop", "rival"])
    ours = emit(delivery_service, namespace, producer, "shop", "invoice.paid", "ours")
    theirs = emit(delivery_service, namespace, producer, "rival", "invoice.paid", "theirs")
    eventually(lambda: arrived(receiver, "/theirs", theirs), what="their delivery")
    their_delivery = httpx.get(
        f"{delivery_service.url}/v1/namespaces/{namespace}/endpoints/theirs/deliveries",
        headers=producer.headers,
        timeout=10,
    ).json()["items"][0]["id"]

    issuer = backend(cluster, namespace, ["shop"])
    manage = ticket(portal, issuer, namespace, "shop", subject=SUBJECT)
    read = ticket(portal, issuer, namespace, "shop", subject=SUBJECT, scope="read")
    with paced(portal, manage) as api, paced(portal, read) as reader:
        wait_for_the_portal(api, "orders")
        eventually(lambda: api.get("/endpoints/theirs/deliveries").status_code == 403)
        our_delivery = api.get("/endpoints/orders/deliveries").json()["items"][0]
        assert our_delivery["eventId"] == ours

        # A read ticket reads, and changes nothing.
        assert reader.get("/endpoints/orders/deliveries").status_code == 200
        assert reader.get(f"/deliveries/{our_delivery['id']}").status_code == 200
        error(reader.post(f"/deliveries/{our_delivery['id']}/resend"), 403, "ReadOnlyTicket")
        since = {"since": "2026-01-01T00:00:00Z"}
        error(reader.post("/endpoints/orders/replay", json=since), 403, "ReadOnlyTicket")
        error(reader.post("/endpoints/orders/ping"), 403, "ReadOnlyTicket")

        # Another app's endpoint in the same namespace: refused without naming the app.
        for response in (
            api.get("/endpoints/theirs/deliveries"),
            api.post("/endpoints/theirs/ping"),
            api.post("/endpoints/theirs/replay", json=since),
        ):
            found = error(response, 403, "OutsideTicket")
            assert "rival" not in found["message"]
        # Another app's delivery: neither read, downloaded nor resent.
        for response in (
            api.get(f"/deliveries/{their_delivery}"),
            api.get(f"/deliveries/{their_delivery}", params={"download": "1"}),
            api.post(f"/deliveries/{their_delivery}/resend"),
        ):
            found = error(response, 403, "OutsideTicket")
            assert "rival" not in found["message"]
        assert len(arrived(receiver, "/theirs", theirs)) == 1

        # Another namespace's endpoint of an app with the same name does not exist here.
        error(api.get("/endpoints/elsewhere/deliveries"), 404, "EndpointNotFound")
        error(api.post("/endpoints/elsewhere/ping"), 404, "EndpointNotFound")
        error(api.get(f"/deliveries/{NO_ID}"), 404, "DeliveryNotFound")
        assert receiver.received("/elsewhere") == []

        # Malformed input.
        error(api.get("/deliveries/not-a-delivery"), 400, "InvalidName")
        error(api.post("/deliveries/dlv_x/resend"), 400, "InvalidName")
        error(api.get("/endpoints/Orders_1/deliveries"), 400, "InvalidName")
        deliveries = "/endpoints/orders/deliveries"
        error(api.get(deliveries, params={"eventType": "invoice.*"}), 400, "BadEventType")
        error(api.get(deliveries, params={"status": "lost"}), 400, "BadStatus")
        error(api.get(deliveries, params={"limit": "501"}), 400, "BadLimit")
        error(api.get(deliveries, params={"cursor": "x"}), 400, "BadCursor")
        error(
            api.get(f"/deliveries/{our_delivery['id']}", params={"download": "y"}),
            400,
            "BadDownload",
        )
        replay = "/endpoints/orders/replay"
        error(api.post(replay, json={}), 422, "Invalid")
        error(api.post(replay, json={"since": 1_800_000_000}), 422, "Invalid")
        error(api.post(replay, json={"since": "2026-01-01T00:00:00"}), 422, "Invalid")
        error(api.post(replay, json={**since, "statuses": ["lost"]}), 422, "Invalid")
        error(api.post(replay, json={**since, "color": "red"}), 422, "Invalid")
        error(
            api.post(replay, content=b"{", headers={"Content-Type": "application/json"}),
            400,
            "InvalidJSON",
        )
        backwards = {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
        error(api.post(replay, json=backwards), 400, "BadUntil")

        # A ticket that does not verify opens nothing.
        head, claims, signature = manage.split(".")
        flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
        with customer(portal, f"{head}.{claims}.{flipped}") as forged:
            error(forged.get("/endpoints/orders/deliveries"), 401, "InvalidTicket")
            error(forged.post("/endpoints/orders/ping"), 401, "InvalidTicket")

        # Nothing refused was recorded as a change.
        assert portal_events(cluster, namespace, "theirs") == []
        assert portal_events(cluster, namespace, "orders") == []
