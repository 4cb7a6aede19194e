"""The tenant API for endpoints, as a customer holding a ticket uses it, against the real
control plane, operator, delivery service and portal: create, secret once, ping verified
with the public `standardwebhooks` library, rotate with both signatures, pause, resume,
delete; and every way of misusing a ticket or the API refused with a reason, nothing
changed."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from kubernetes import client
from standardwebhooks.webhooks import Webhook

from tests.harness import Cluster, PortalProcess, Receiver, eventually
from tests.integration.portal_support import (
    GROUP,
    VERSION,
    apply_endpoint,
    backend,
    customer,
    make_app,
    ready,
    request_ticket,
    ticket,
)

pytestmark = pytest.mark.integration
SUBJECT = "acme-corp/alice@example.com"


def endpoints(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    listed = client.CustomObjectsApi(cluster.api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "webhookendpoints"
    )
    return list(listed["items"])


def portal_events(cluster: Cluster, namespace: str, name: str) -> list[Any]:
    listed = client.CoreV1Api(cluster.api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return [e for e in listed.items if e.source and e.source.component == "webhook-operator-portal"]


def test_a_customer_manages_an_endpoint_end_to_end(
    cluster: Cluster, namespace: str, portal: PortalProcess, receiver: Receiver
) -> None:
    make_app(cluster, namespace, portal={"allowInsecureHttp": True})
    issuer = backend(cluster, namespace, ["shop"])
    with customer(portal, ticket(portal, issuer, namespace, "shop", subject=SUBJECT)) as api:
        created = api.post(
            "/endpoints",
            json={
                "name": "orders",
                "url": receiver.url("/hook"),
                "events": ["invoice.*"],
                "description": "Billing sync",
            },
        )
        assert created.status_code == 201, created.text
        body = created.json()
        secret = body["secret"]
        assert secret.startswith("whsec_")
        assert len(secret) > 30
        assert body["managedBy"] == "portal"
        assert body["createdBy"] == SUBJECT

        # In Kubernetes: a WebhookEndpoint labelled as the portal's, annotated with the
        # subject, Ready once the operator has taken it.
        obj = ready(cluster, namespace, "orders")
        assert obj["metadata"]["labels"]["webhook-operator.dev/managed-by"] == "portal"
        assert obj["metadata"]["annotations"]["webhook-operator.dev/created-by"] == SUBJECT
        listed = cluster.kubectl("get", "webhookendpoints", "-n", namespace).stdout
        assert "orders" in listed

        # Afterwards the secret is only ever shown masked.
        read = api.get("/endpoints/orders").json()
        assert read["secret"] == f"whsec_…{secret[-4:]}"
        assert all(item.get("secret") is None for item in api.get("/endpoints").json()["items"])

        # A ping arrives signed with that secret, as the public library verifies it.
        pinged = api.post("/endpoints/orders/ping")
        assert pinged.status_code == 202, pinged.text
        eventually(lambda: receiver.received("/hook"), what="the ping arrives")
        request = receiver.received("/hook")[-1]
        Webhook(secret).verify(request["body"], request["headers"])

        # Rotation shows the new secret once; during the grace period deliveries carry both
        # signatures.
        rotated = api.post("/endpoints/orders/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["secret"]
        assert new_secret.startswith("whsec_")
        assert new_secret != secret
        assert rotated.json()["previousSecretExpiresAt"]

        def both_signatures() -> bool:
            api.post("/endpoints/orders/ping")
            time.sleep(0.3)
            last = receiver.received("/hook")[-1]
            return len(last["headers"]["webhook-signature"].split()) == 2

        eventually(both_signatures, timeout=20, interval=0.5, what="two signatures")
        request = receiver.received("/hook")[-1]
        for key in (secret, new_secret):
            Webhook(key).verify(request["body"], request["headers"])

        # Pause and resume change spec.active.
        paused = api.patch("/endpoints/orders", json={"active": False})
        assert paused.status_code == 200, paused.text
        assert paused.json()["active"] is False
        resumed = api.patch("/endpoints/orders", json={"active": True, "description": None})
        assert resumed.json()["active"] is True
        assert resumed.json()["description"] is None

        # Every change is in the endpoint's Events, naming who made it.
        reasons = {e.reason for e in portal_events(cluster, namespace, "orders")}
        assert {"PortalCreated", "PortalSecretRotated", "PortalUpdated"} <= reasons
        assert all(SUBJECT in e.message for e in portal_events(cluster, namespace, "orders"))

        deleted = api.delete("/endpoints/orders")
        assert deleted.status_code == 204, deleted.text
        assert api.get("/endpoints/orders").status_code == 404
        eventually(lambda: not endpoints(cluster, namespace), what="endpoint deleted")


def test_gitops_endpoints_are_listed_read_only(
    cluster: Cluster, namespace: str, portal: PortalProcess, receiver: Receiver
) -> None:
    make_app(cluster, namespace, portal={"allowInsecureHttp": True})
    apply_endpoint(cluster, namespace, "from-git", receiver.url("/git"), events=("invoice.paid",))
    issuer = backend(cluster, namespace, ["shop"])
    with customer(portal, ticket(portal, issuer, namespace, "shop")) as api:
        eventually(lambda: api.get("/endpoints/from-git").status_code == 200, what="portal sees it")
        assert api.get("/endpoints/from-git").json()["managedBy"] == "gitops"
        for response in (
            api.patch("/endpoints/from-git", json={"active": False}),
            api.delete("/endpoints/from-git"),
            api.post("/endpoints/from-git/rotate-secret"),
        ):
            assert response.status_code == 409, response.text
            assert response.json()["error"]["reason"] == "ManagedByGitOps"
    spec = endpoints(cluster, namespace)[0]["spec"]
    assert spec.get("active", True) is True


def test_reenabling_through_active_clears_an_automatic_disable(
    cluster: Cluster, namespace: str, portal: PortalProcess, receiver: Receiver
) -> None:
    make_app(cluster, namespace, portal={"allowInsecureHttp": True})
    issuer = backend(cluster, namespace, ["shop"])
    receiver.respond("/gone", (410, {}, 0.0))
    with customer(portal, ticket(portal, issuer, namespace, "shop")) as api:
        created = api.post(
            "/endpoints", json={"name": "gone", "url": receiver.url("/gone"), "events": ["*"]}
        )
        assert created.status_code == 201, created.text
        ready(cluster, namespace, "gone")
        assert api.post("/endpoints/gone/ping").status_code == 202

        def disabled() -> bool:
            return api.get("/endpoints/gone").json()["health"] == "Disabled"

        eventually(disabled, timeout=30, what="auto-disabled after 410 Gone")
        receiver.respond("/gone", (204, {}, 0.0))
        enabled = api.patch("/endpoints/gone", json={"active": True})
        assert enabled.status_code == 200, enabled.text
        obj = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "webhookendpoints", "gone"
        )
        assert obj["metadata"]["annotations"].get("webhook-operator.dev/enable")
        eventually(
            lambda: api.get("/endpoints/gone").json()["health"] != "Disabled",
            timeout=30,
            what="enabled again",
        )


# --- tickets misused -------------------------------------------------------------------------


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["app"] = "other"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def test_bad_tickets_are_refused(cluster: Cluster, namespace: str, portal: PortalProcess) -> None:
    make_app(cluster, namespace)
    issuer = backend(cluster, namespace, ["shop"])
    good = ticket(portal, issuer, namespace, "shop")
    url = f"{portal.url}/v1/portal/endpoints"
    cases = {
        "missing": ({}, "MissingTicket"),
        "not a bearer": ({"Authorization": f"Basic {good}"}, "MissingTicket"),
        "malformed": ({"Authorization": "Bearer not-a-ticket"}, "MalformedTicket"),
        "tampered": ({"Authorization": f"Bearer {_tampered(good)}"}, "InvalidTicket"),
    }
    for what, (headers, reason) in cases.items():
        response = httpx.get(url, headers=headers, timeout=10)
        assert response.status_code == 401, what
        assert response.json()["error"]["reason"] == reason, what
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    short = ticket(portal, issuer, namespace, "shop", ttl="1s")
    time.sleep(1.5)
    expired = httpx.get(url, headers={"Authorization": f"Bearer {short}"}, timeout=10)
    assert expired.status_code == 401
    assert expired.json()["error"]["reason"] == "ExpiredTicket"


def test_issuing_is_guarded(cluster: Cluster, namespace: str, portal: PortalProcess) -> None:
    make_app(cluster, namespace)
    make_app(cluster, namespace, name="off", portal={"enabled": False})
    issuer = backend(cluster, namespace, ["shop", "off"])
    outsider = backend(cluster, namespace, ["some-other-app"], name="outsider")

    refused = request_ticket(portal, outsider, namespace, "shop")
    assert refused.status_code == 403
    assert "issue-tickets" in refused.json()["error"]["message"]

    for ttl in ("2h", "999999999999h"):
        too_long = request_ticket(portal, issuer, namespace, "shop", ttl=ttl)
        assert too_long.status_code == 422, too_long.text
        assert too_long.json()["error"]["reason"] == "TtlTooLong"

    for body in ({"scope": "admin"}, {"subject": ""}, {"ttl": "soon"}, {"extra": 1}):
        bad = request_ticket(portal, issuer, namespace, "shop", **body)
        assert bad.status_code == 422, (body, bad.text)

    disabled = request_ticket(portal, issuer, namespace, "off")
    assert disabled.status_code == 403
    assert disabled.json()["error"]["reason"] == "PortalDisabled"

    no_token = httpx.post(
        f"{portal.url}/v1/namespaces/{namespace}/apps/shop/access-tickets",
        json={"subject": "x"},
        timeout=10,
    )
    assert no_token.status_code == 401


def test_a_ticket_is_confined_to_its_app_and_scope(
    cluster: Cluster,
    namespace: str,
    portal: PortalProcess,
    receiver: Receiver,
    tmp_path: Any,
) -> None:
    make_app(cluster, namespace, portal={"allowInsecureHttp": True})
    make_app(cluster, namespace, name="other", portal={"allowInsecureHttp": True})
    issuer = backend(cluster, namespace, ["shop", "other"])
    with customer(portal, ticket(portal, issuer, namespace, "other")) as other:
        made = other.post(
            "/endpoints", json={"name": "theirs", "url": receiver.url("/t"), "events": ["*"]}
        )
        assert made.status_code == 201, made.text

    # Same app name in another namespace: invisible to this namespace's tickets.
    elsewhere = f"{namespace}-b"
    cluster.kubectl("create", "namespace", elsewhere)
    try:
        make_app(cluster, elsewhere, portal={"allowInsecureHttp": True})
        there = backend(cluster, elsewhere, ["shop"])
        with customer(portal, ticket(portal, there, elsewhere, "shop")) as api:
            assert (
                api.post(
                    "/endpoints", json={"name": "far", "url": receiver.url("/f"), "events": ["*"]}
                ).status_code
                == 201
            )

        with customer(portal, ticket(portal, issuer, namespace, "shop")) as api:
            for response in (
                api.get("/endpoints/theirs"),
                api.patch("/endpoints/theirs", json={"active": False}),
                api.delete("/endpoints/theirs"),
            ):
                assert response.status_code == 403, response.text
                assert response.json()["error"]["reason"] == "OutsideTicket"
                assert "other" not in response.json()["error"]["message"]
            assert api.get("/endpoints/far").status_code == 404
            assert [i["name"] for i in api.get("/endpoints").json()["items"]] == []

        with customer(portal, ticket(portal, issuer, namespace, "shop", scope="read")) as api:
            assert api.get("/endpoints").status_code == 200
            for response in (
                api.post("/endpoints", json={"url": receiver.url("/r"), "events": ["*"]}),
                api.patch("/endpoints/theirs", json={"active": False}),
            ):
                assert response.status_code == 403, response.text
                assert response.json()["error"]["reason"] == "ReadOnlyTicket"
    finally:
        cluster.kubectl("delete", "namespace", elsewhere, "--wait=false")
    spec = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "webhookendpoints", "theirs"
    )["spec"]
    assert spec.get("active", True) is True


def test_bad_endpoints_are_refused_and_nothing_is_created(
    cluster: Cluster, namespace: str, portal: PortalProcess, receiver: Receiver
) -> None:
    make_app(cluster, namespace, portal={"maxEndpoints": 1, "eventTypes": ["invoice.*"]})
    make_app(cluster, namespace, name="plain", portal={"allowInsecureHttp": True})
    issuer = backend(cluster, namespace, ["shop", "plain"])
    https = "https://127.0.0.1:9/hook"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"url": "ftp://127.0.0.1/x", "events": ["invoice.paid"]}, 422, "InvalidUrl"),
        ({"url": "https://user:pw@127.0.0.1/x", "events": ["invoice.paid"]}, 422, "InvalidUrl"),
        ({"url": receiver.url("/plain"), "events": ["invoice.paid"]}, 422, "InvalidUrl"),
        ({"url": "https://127.0.0.2/x", "events": ["invoice.paid"]}, 422, "InvalidUrl"),
        ({"url": "https://[::1]:9/x", "events": ["invoice.paid"]}, 422, "InvalidUrl"),
        ({"url": https, "events": ["invoice.refunded"]}, 422, "InvalidEvents"),
        ({"url": https, "events": ["customer.deleted"]}, 422, "InvalidEvents"),
        ({"url": https, "events": ["*"]}, 422, "InvalidEvents"),
        ({"url": https, "events": []}, 422, "InvalidEvents"),
        ({"url": https, "events": ["Not A Type"]}, 422, "InvalidEvents"),
        ({"url": https, "events": ["invoice.paid"], "name": "Bad_Name"}, 400, "InvalidName"),
        ({"url": https, "events": ["invoice.paid"], "name": "x" * 64}, 400, "InvalidName"),
        ({"url": https, "events": ["invoice.paid"], "name": ""}, 400, "InvalidName"),
        ({"url": https, "events": ["invoice.paid"], "description": "a\x1b[2Jb"}, 422, "Invalid"),
        ({"url": https}, 422, "Invalid"),
        ({"url": https, "events": ["invoice.paid"], "secretRef": {"name": "x"}}, 422, "Invalid"),
    ]
    with customer(portal, ticket(portal, issuer, namespace, "shop")) as api:
        for body, status, reason in cases:
            response = api.post("/endpoints", json=body)
            assert response.status_code == status, (body, response.text)
            assert response.json()["error"]["reason"] == reason, (body, response.text)
        assert api.post("/endpoints", content=b"{not json").status_code == 400
        huge = api.post(
            "/endpoints",
            content=json.dumps(
                {"url": https, "events": ["invoice.paid"], "description": "x" * 70000}
            ),
        )
        assert huge.status_code == 413
        form = api.post("/endpoints", content=b"url=x", headers={"Content-Type": "text/plain"})
        assert form.status_code == 415
        assert endpoints(cluster, namespace) == []

        assert (
            api.post(
                "/endpoints", json={"name": "one", "url": https, "events": ["invoice.paid"]}
            ).status_code
            == 201
        )
        over = api.post("/endpoints", json={"name": "two", "url": https, "events": ["invoice.*"]})
        assert over.status_code == 409
        assert over.json()["error"]["reason"] == "TooManyEndpoints"
        bad_patch = api.patch("/endpoints/one", json={"url": "https://127.0.0.3/"})
        assert bad_patch.status_code == 422
        assert api.get("/endpoints/Not_A_Name").status_code == 400
    assert [e["metadata"]["name"] for e in endpoints(cluster, namespace)] == ["one"]
    assert endpoints(cluster, namespace)[0]["spec"]["url"] == https

    # An app that allows plain http takes the receiver's URL.
    with customer(portal, ticket(portal, issuer, namespace, "plain")) as api:
        ok = api.post(
            "/endpoints", json={"name": "plain-one", "url": receiver.url("/p"), "events": ["*"]}
        )
        assert ok.status_code == 201, ok.text


def test_a_ticket_that_sends_too_fast_is_slowed(
    cluster: Cluster, namespace: str, portal: PortalProcess, tmp_path: Any
) -> None:
    slow = PortalProcess(
        cluster.kubeconfig,
        tmp_path,
        portal.delivery_url,
        "--ticket-rate=5",
        key_namespace=namespace,
    ).start()
    try:
        make_app(cluster, namespace)
        issuer = backend(cluster, namespace, ["shop"])
        with customer(slow, ticket(slow, issuer, namespace, "shop")) as api:
            answers = [api.get("/endpoints") for _ in range(30)]
            limited = [a for a in answers if a.status_code == 429]
            assert limited, "30 requests at once must exceed 5/s with a burst of 10"
            assert int(limited[0].headers["Retry-After"]) >= 1
            assert limited[0].json()["error"]["reason"] == "TooManyRequests"
            time.sleep(int(limited[0].headers["Retry-After"]))
            assert api.get("/endpoints").status_code == 200
        # The budget is the ticket's: another ticket is not slowed by this one.
        with customer(slow, ticket(slow, issuer, namespace, "shop")) as api:
            assert api.get("/endpoints").status_code == 200
    finally:
        slow.stop()


def test_replacing_the_key_secret_revokes_every_ticket(
    cluster: Cluster,
    namespace: str,
    portal: PortalProcess,
    tmp_path: Any,
) -> None:
    own = PortalProcess(
        cluster.kubeconfig, tmp_path, portal.delivery_url, key_namespace=namespace
    ).start()
    try:
        make_app(cluster, namespace)
        issuer = backend(cluster, namespace, ["shop"])
        old = ticket(own, issuer, namespace, "shop")
        with customer(own, old) as api:
            assert api.get("/endpoints").status_code == 200
        cluster.kubectl("delete", "secret", own.key_secret, "-n", namespace)

        def revoked() -> bool:
            with customer(own, old) as api:
                return api.get("/endpoints").status_code == 401

        eventually(revoked, timeout=30, interval=1.0, what="old ticket refused")
        with customer(own, ticket(own, issuer, namespace, "shop")) as api:
            assert api.get("/endpoints").status_code == 200
    finally:
        own.stop()


def test_the_endpoint_list_pages_by_name(
    cluster: Cluster, namespace: str, portal: PortalProcess, receiver: Receiver
) -> None:
    make_app(cluster, namespace)
    for name in ("c", "a", "b"):
        apply_endpoint(cluster, namespace, name, receiver.url(f"/{name}"))
    issuer = backend(cluster, namespace, ["shop"])
    with customer(portal, ticket(portal, issuer, namespace, "shop")) as api:
        eventually(lambda: len(api.get("/endpoints").json()["items"]) == 3, what="portal sees all")
        first = api.get("/endpoints", params={"limit": 2}).json()
        assert [i["name"] for i in first["items"]] == ["a", "b"]
        assert first["next"] == "b"
        rest = api.get("/endpoints", params={"limit": 2, "cursor": first["next"]}).json()
        assert [i["name"] for i in rest["items"]] == ["c"]
        assert rest["next"] is None
        assert api.get("/endpoints", params={"limit": 0}).status_code == 400
