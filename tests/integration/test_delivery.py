"""The delivery service end to end: real apiserver, real operator, real HTTP receivers,
the real store. Signatures are checked with the public `standardwebhooks` package."""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from standardwebhooks.webhooks import Webhook

from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Producer, Receiver, eventually
from tests.integration.test_operator import events

GROUP, VERSION = "webhook-operator.dev", "v1alpha1"


@pytest.fixture(autouse=True)
def _services(operator: OperatorProcess, delivery_service: DeliveryProcess) -> None:
    assert delivery_service.process is not None
    assert delivery_service.process.poll() is None, delivery_service.log()[-3000:]


def apply(cluster: Cluster, namespace: str, *objs: dict[str, Any]) -> None:
    for obj in objs:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def app(
    name: str = "billing",
    types: tuple[str, ...] = ("invoice.paid", "invoice.created"),
    schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    event_types: list[dict[str, Any]] = [{"name": t} for t in types]
    if schema is not None:
        event_types[0]["schema"] = schema
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookApp",
        "metadata": {"name": name},
        "spec": {"eventTypes": event_types},
    }


def endpoint(
    name: str,
    url: str,
    events: tuple[str, ...] = ("invoice.*",),
    app_name: str = "billing",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebhookEndpoint",
        "metadata": {"name": name},
        "spec": {
            "appRef": {"name": app_name},
            "url": url,
            "allowInsecureHttp": True,
            "events": list(events),
            **spec,
        },
    }


def get(cluster: Cluster, namespace: str, plural: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name
    )
    return obj


def ready(cluster: Cluster, namespace: str, name: str) -> None:
    def check() -> bool:
        conds = (
            get(cluster, namespace, "webhookendpoints", name)
            .get("status", {})
            .get("conditions", [])
        )
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    eventually(check, what=f"endpoint {name} Ready")


def secret_values(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    secret = client.CoreV1Api(cluster.api).read_namespaced_secret(
        f"{name}-signing-secret", namespace
    )
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def emit(
    svc: DeliveryProcess,
    namespace: str,
    producer: Producer | None,
    type_: str = "invoice.paid",
    data: Any = None,
    app_name: str = "billing",
    id_: str | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {
        "type": type_,
        "data": data if data is not None else {"invoiceId": "in_1"},
    }
    if id_:
        body["id"] = id_
    return httpx.post(
        f"{svc.url}/v1/namespaces/{namespace}/apps/{app_name}/events",
        content=raw if raw is not None else json.dumps(body).encode(),
        headers={
            **(producer.headers if producer else {}),
            **(headers or {}),
            "Content-Type": "application/json",
        },
        timeout=10,
    )


def setup_app(
    cluster: Cluster,
    namespace: str,
    receiver: Receiver,
    *endpoints: dict[str, Any],
    **app_kwargs: Any,
) -> Producer:
    apply(cluster, namespace, app(**app_kwargs), *endpoints)
    for ep in endpoints:
        ready(cluster, namespace, ep["metadata"]["name"])
    return Producer(cluster, namespace, [app_kwargs.get("name", "billing")])


def deliveries(
    svc: DeliveryProcess, namespace: str, producer: Producer, endpoint_name: str, **params: Any
) -> dict[str, Any]:
    response = httpx.get(
        f"{svc.url}/v1/namespaces/{namespace}/endpoints/{endpoint_name}/deliveries",
        params=params,
        headers=producer.headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_event_arrives_signed_and_endpoint_turns_healthy(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")))
    response = emit(delivery_service, namespace, producer, data={"invoiceId": "in_42"})
    assert response.status_code == 202, response.text
    assert response.json()["deliveries"] == 1

    (request,) = eventually(lambda: receiver.received("/hook"), what="delivery arrives")  # type: ignore[misc]
    secret = secret_values(cluster, namespace, "ep")["secret"]
    payload = Webhook(secret).verify(request["body"], request["headers"])
    assert payload["type"] == "invoice.paid"
    assert payload["data"] == {"invoiceId": "in_42"}
    assert request["headers"]["webhook-id"] == response.json()["eventId"]

    def healthy() -> bool:
        status = get(cluster, namespace, "webhookendpoints", "ep").get("status", {})
        return status.get("health") == "Healthy" and bool(status.get("lastDeliveryTime"))

    eventually(healthy, timeout=20, what="kubectl get shows Healthy")
    row = cluster.kubectl("get", "whe", "ep", "-n", namespace).stdout.splitlines()[1]
    assert "Healthy" in row


def test_rotation_grace_sends_both_signatures(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")))
    old = secret_values(cluster, namespace, "ep")["secret"]
    cluster.kubectl(
        "annotate", "whe", "ep", "-n", namespace, "webhook-operator.dev/rotate-secret=1"
    )
    eventually(
        lambda: secret_values(cluster, namespace, "ep").get("previous") == old, what="rotated"
    )
    new = secret_values(cluster, namespace, "ep")["secret"]

    # The service sees the rotated Secret through its watch; wait until it signs with both.
    def both_signatures() -> bool:
        emit(delivery_service, namespace, producer)
        time.sleep(0.3)
        last = receiver.received("/hook")[-1:]
        return bool(last) and len(last[0]["headers"]["webhook-signature"].split()) == 2

    eventually(both_signatures, timeout=20, interval=0.5, what="two signatures")
    request = receiver.received("/hook")[-1]
    for secret in (old, new):
        Webhook(secret).verify(request["body"], request["headers"])


def test_ingest_errors_say_what_is_wrong(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    schema = {
        "type": "object",
        "required": ["invoiceId"],
        "properties": {"invoiceId": {"type": "string"}},
    }
    producer = setup_app(
        cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")), schema=schema
    )
    apply(cluster, namespace, app("payroll"))
    svc = delivery_service

    def error(response: httpx.Response, status: int, reason: str) -> str:
        assert response.status_code == status, response.text
        body = response.json()["error"]
        assert body["reason"] == reason
        return str(body["message"])

    assert "not valid JSON" in error(
        emit(svc, namespace, producer, raw=b"{nope"), 400, "MalformedJSON"
    )
    assert "type" in error(
        emit(svc, namespace, producer, raw=b'{"data": {}}'), 400, "InvalidEventType"
    )
    error(emit(svc, namespace, producer, app_name="nope"), 403, "Forbidden")  # not granted: no leak
    assert "refund.issued" in error(
        emit(svc, namespace, producer, "refund.issued"), 422, "UnknownEventType"
    )
    message = error(emit(svc, namespace, producer, data={"invoiceId": 7}), 422, "SchemaMismatch")
    assert "invoiceId" in message
    big = json.dumps({"type": "invoice.paid", "data": {"x": "a" * 300_000}}).encode()
    error(emit(svc, namespace, producer, raw=big), 413, "TooLarge")
    error(emit(svc, namespace, None), 401, "Unauthorized")
    error(
        emit(svc, namespace, None, headers={"Authorization": "Bearer not-a-token"}),
        401,
        "Unauthorized",
    )
    message = error(emit(svc, namespace, producer, app_name="payroll"), 403, "Forbidden")
    assert "emit" in message
    assert "payroll" in message

    everything = Producer(cluster, namespace, ["billing", "nope"], name="admin")
    assert "does not exist" in error(
        emit(svc, namespace, everything, app_name="nope"), 404, "AppNotFound"
    )
    assert receiver.received("/hook") == []


def test_rbac_is_per_app_and_per_namespace(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")))
    other = f"{namespace}-y"[:63]
    client.CoreV1Api(cluster.api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=other))
    )
    try:
        apply(cluster, other, app())
        assert emit(delivery_service, other, producer).status_code == 403
        assert emit(delivery_service, namespace, producer).status_code == 202
    finally:
        client.CoreV1Api(cluster.api).delete_namespace(other)


def test_idempotent_ids_and_fan_out_by_subscription(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("all", receiver.url("/all"), ("*",)),
        endpoint("wild", receiver.url("/wild"), ("invoice.*",)),
        endpoint("exact", receiver.url("/exact"), ("invoice.created",)),
    )
    first = emit(delivery_service, namespace, producer, "invoice.paid", id_="order-1")
    again = emit(delivery_service, namespace, producer, "invoice.paid", id_="order-1")
    assert first.json()["deliveries"] == 2
    assert again.json() == {**first.json(), "duplicate": True}
    eventually(lambda: receiver.received("/all") and receiver.received("/wild"))
    time.sleep(1)
    assert len(receiver.received("/all")) == 1
    assert len(receiver.received("/wild")) == 1
    assert receiver.received("/exact") == []


def test_retries_then_success_with_attempt_log(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    receiver.respond("/hook", (500, {}, 0.0), (502, {}, 0.0), (200, {}, 0.0))
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("ep", receiver.url("/hook"), retry={"schedule": ["1s", "1s", "1s"]}),
    )
    emit(delivery_service, namespace, producer)
    eventually(lambda: len(receiver.received("/hook")) == 3, timeout=20, what="three attempts")
    ids = {r["headers"]["webhook-id"] for r in receiver.received("/hook")}
    assert len(ids) == 1  # the same message id on every retry

    def delivered() -> dict[str, Any] | None:
        items = deliveries(delivery_service, namespace, producer, "ep")["items"]
        return items[0] if items and items[0]["status"] == "delivered" else None

    item = eventually(delivered, what="delivered")
    assert isinstance(item, dict)
    detail = httpx.get(
        f"{delivery_service.url}/v1/namespaces/{namespace}/deliveries/{item['id']}",
        headers=producer.headers,
        timeout=10,
    ).json()
    assert [a["httpStatus"] for a in detail["attemptLog"]] == [500, 502, 200]
    assert detail["attemptLog"][0]["error"].startswith("500")
    assert json.loads(detail["payload"])["type"] == "invoice.paid"


DISABLED_EVENT = ("Warning", "EndpointDisabled")
RECOVERED_EVENT = ("Normal", "EndpointRecovered")


def test_gone_disables_at_once_and_enable_annotation_flushes_held(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    receiver.respond("/hook", (410, {}, 0.0), (204, {}, 0.0))
    # Held deliveries are released oldest first; one at a time, they also arrive in that
    # order (with several in flight, arrival order is the network's).
    producer = setup_app(
        cluster, namespace, receiver, endpoint("ep", receiver.url("/hook"), maxConcurrency=1)
    )
    emit(delivery_service, namespace, producer, id_="first")

    def disabled() -> bool:
        status = get(cluster, namespace, "webhookendpoints", "ep").get("status", {})
        return status.get("health") == "Disabled" and status.get("disabledReason") == "Gone"

    eventually(disabled, timeout=20, what="Disabled (Gone)")
    eventually(
        lambda: [e for e in events(cluster, namespace, "ep") if e[:2] == DISABLED_EVENT],
        timeout=20,
        what="a Warning Event EndpointDisabled",
    )
    for n in range(3):
        emit(delivery_service, namespace, producer, data={"invoiceId": f"held-{n}"})
    held = deliveries(delivery_service, namespace, producer, "ep", status="held")["items"]
    assert len(held) == 3
    time.sleep(1)
    assert len(receiver.received("/hook")) == 1

    cluster.kubectl("annotate", "whe", "ep", "-n", namespace, "webhook-operator.dev/enable=again")
    eventually(
        lambda: len(receiver.received("/hook")) == 4, timeout=20, what="held deliveries flushed"
    )
    bodies = [json.loads(r["body"])["data"]["invoiceId"] for r in receiver.received("/hook")[1:]]
    assert bodies == ["held-0", "held-1", "held-2"]  # oldest first
    eventually(
        lambda: get(cluster, namespace, "webhookendpoints", "ep")["status"]["health"] == "Healthy",
        timeout=20,
    )
    eventually(
        lambda: [e for e in events(cluster, namespace, "ep") if e[:2] == RECOVERED_EVENT],
        timeout=20,
        what="a Normal Event EndpointRecovered",
    )
    found = [e for e in events(cluster, namespace, "ep") if e[:2] == DISABLED_EVENT]
    assert "deliveries stopped (Gone)" in found[0][2], found


def test_exhausted_retries_disable_the_endpoint(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    receiver.respond("/hook", (500, {}, 0.0))
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("ep", receiver.url("/hook"), retry={"schedule": ["1s"]}),
    )
    emit(delivery_service, namespace, producer)
    eventually(
        lambda: deliveries(delivery_service, namespace, producer, "ep", status="exhausted")[
            "items"
        ],
        timeout=20,
        what="exhausted",
    )

    def disabled() -> bool:
        status = get(cluster, namespace, "webhookendpoints", "ep").get("status", {})
        return (
            status.get("disabledReason") == "RetriesExhausted"
            and status.get("health") == "Disabled"
        )

    eventually(disabled, timeout=20)
    assert len(receiver.received("/hook")) == 2


def test_retry_after_is_honoured(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    receiver.respond("/hook", (503, {"Retry-After": "3"}, 0.0), (204, {}, 0.0))
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("ep", receiver.url("/hook"), retry={"schedule": ["1s"]}),
    )
    emit(delivery_service, namespace, producer)
    eventually(lambda: len(receiver.received("/hook")) == 2, timeout=20)
    first, second = receiver.received("/hook")
    assert second["at"] - first["at"] >= 2.5


def test_pause_holds_and_resume_delivers(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(
        cluster, namespace, receiver, endpoint("ep", receiver.url("/hook"), active=False)
    )
    for n in range(2):
        emit(delivery_service, namespace, producer, data={"invoiceId": f"p{n}"})
    assert len(deliveries(delivery_service, namespace, producer, "ep", status="held")["items"]) == 2
    time.sleep(1)
    assert receiver.received("/hook") == []
    apply(cluster, namespace, endpoint("ep", receiver.url("/hook"), active=True))
    eventually(lambda: len(receiver.received("/hook")) == 2, timeout=20)


def test_deleting_an_endpoint_cancels_its_deliveries(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    receiver.respond("/hook", (500, {}, 0.0))
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("ep", receiver.url("/hook"), retry={"schedule": ["1h"]}),
    )
    emit(delivery_service, namespace, producer)
    eventually(lambda: receiver.received("/hook"))
    cluster.kubectl("delete", "whe", "ep", "-n", namespace)

    def cancelled() -> bool:
        page = httpx.get(
            f"{delivery_service.url}/v1/namespaces/{namespace}/apps/billing/deliveries",
            headers=producer.headers,
            params={"status": "cancelled"},
            timeout=10,
        ).json()
        return len(page["items"]) == 1

    eventually(cancelled, what="cancelled")


def test_ssrf_guard_refuses_addresses_not_allowed(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    # 127.0.0.2 is loopback but not on the service's allow-list (127.0.0.1/32): refused
    # before any connection is made.
    port = receiver.base.rsplit(":", 1)[1]
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("ep", f"http://127.0.0.2:{port}/hook", retry={"schedule": []}),
    )
    emit(delivery_service, namespace, producer)

    def refused() -> dict[str, Any] | None:
        items = deliveries(delivery_service, namespace, producer, "ep")["items"]
        return items[0] if items and items[0]["status"] == "exhausted" else None

    item = eventually(refused, timeout=20)
    assert isinstance(item, dict)
    assert "refused by the address policy" in item["lastError"]
    assert "loopback" in item["lastError"]
    assert receiver.requests == []


def test_pagination_filter_resend_replay_and_ping(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/hook")))
    for n in range(7):
        assert (
            emit(delivery_service, namespace, producer, data={"invoiceId": f"n{n}"}).status_code
            == 202
        )
    eventually(lambda: len(receiver.received("/hook")) == 7, timeout=20)

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = deliveries(delivery_service, namespace, producer, "ep", **params)
        seen += [i["id"] for i in page["items"]]
        cursor = page["next"]
        if not cursor:
            break
    assert len(seen) == 7
    assert seen == sorted(seen, reverse=True)  # newest first, no repeats

    resent = httpx.post(
        f"{delivery_service.url}/v1/namespaces/{namespace}/deliveries/{seen[0]}/resend",
        headers=producer.headers,
        timeout=10,
    )
    assert resent.status_code == 202, resent.text
    eventually(lambda: len(receiver.received("/hook")) == 8, timeout=20)

    ping = httpx.post(
        f"{delivery_service.url}/v1/namespaces/{namespace}/endpoints/ep/ping",
        headers=producer.headers,
        timeout=10,
    )
    assert ping.status_code == 202, ping.text
    eventually(
        lambda: any(
            json.loads(r["body"])["type"] == "webhook.ping" for r in receiver.received("/hook")
        )
    )

    bad = httpx.post(
        f"{delivery_service.url}/v1/namespaces/{namespace}/endpoints/ep/replay",
        json={"since": "yesterday"},
        headers=producer.headers,
        timeout=10,
    )
    assert bad.status_code == 400
    assert "RFC 3339" in bad.json()["error"]["message"]


def test_replay_failed_deliveries(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    receiver.respond("/hook", (500, {}, 0.0))
    producer = setup_app(
        cluster, namespace, receiver, endpoint("ep", receiver.url("/hook"), retry={"schedule": []})
    )
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))

    def exhausted(n: int) -> None:
        eventually(
            lambda: (
                len(
                    deliveries(delivery_service, namespace, producer, "ep", status="exhausted")[
                        "items"
                    ]
                )
                == n
            ),
            timeout=20,
            what=f"{n} exhausted",
        )

    for n in (1, 2):
        # Each exhausted delivery disables the endpoint; enable it again for the next one.
        emit(delivery_service, namespace, producer, data={"invoiceId": f"r{n}"})
        exhausted(n)
        cluster.kubectl(
            "annotate",
            "whe",
            "ep",
            "-n",
            namespace,
            "--overwrite",
            f"webhook-operator.dev/enable=after-{n}",
        )
        eventually(
            lambda: (
                get(cluster, namespace, "webhookendpoints", "ep")["status"].get("health")
                != "Disabled"
            ),
            timeout=20,
            what="enabled again",
        )
    receiver.respond("/hook", (204, {}, 0.0))
    replay = httpx.post(
        f"{delivery_service.url}/v1/namespaces/{namespace}/endpoints/ep/replay",
        json={"since": since},
        headers=producer.headers,
        timeout=10,
    )
    assert replay.status_code == 202, replay.text
    assert replay.json()["replayed"] == 2
    eventually(
        lambda: (
            len(
                deliveries(delivery_service, namespace, producer, "ep", status="delivered")["items"]
            )
            == 2
        ),
        timeout=20,
    )


def test_rate_limit_is_enforced(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    producer = setup_app(
        cluster,
        namespace,
        receiver,
        endpoint("ep", receiver.url("/hook"), rateLimit={"perSecond": 5, "burst": 1}),
    )
    for _ in range(10):
        emit(delivery_service, namespace, producer)
    eventually(lambda: len(receiver.received("/hook")) == 10, timeout=20)
    times = [r["at"] for r in receiver.received("/hook")]
    assert times[-1] - times[0] >= 1.5  # 10 at 5/s with no burst: about 1.8s


def test_metrics_and_openapi(delivery_service: DeliveryProcess) -> None:
    # Metrics name every tenant's objects: only on their own listener, not on the API.
    assert httpx.get(f"{delivery_service.url}/metrics", timeout=10).status_code == 404
    metrics = httpx.get(delivery_service.metrics_url, timeout=10).text
    for name in (
        "webhook_delivery_attempts",
        "webhook_delivery_latency_seconds",
        "webhook_queue_due",
        "webhook_queue_oldest_due_age_seconds",
        "webhook_deliveries_held",
        'webhook_store_batch_rows_count{operation="claim"}',
    ):
        assert name in metrics
    spec = httpx.get(f"{delivery_service.url}/openapi.json", timeout=10).json()
    assert "/v1/namespaces/{namespace}/apps/{app}/events" in spec["paths"]


def test_sigkill_mid_delivery_loses_nothing(
    cluster: Cluster, namespace: str, receiver: Receiver, tmp_path: Path
) -> None:
    svc = DeliveryProcess(
        cluster.kubeconfig,
        tmp_path,
        f"sqlite:///{tmp_path / 'd.db'}",
        "--lease-seconds=3",
        name="crashy",
    )
    svc.start()
    try:
        receiver.respond("/slow", (204, {}, 3.0))
        producer = setup_app(cluster, namespace, receiver, endpoint("ep", receiver.url("/slow")))
        assert emit(svc, namespace, producer, id_="precious").status_code == 202
        eventually(lambda: receiver.received("/slow"), what="attempt started")
        svc.stop(signal.SIGKILL)
        receiver.respond("/slow", (204, {}, 0.0))
        svc.start()
        eventually(
            lambda: deliveries(svc, namespace, producer, "ep", status="delivered")["items"],
            timeout=30,
            what="delivered after restart",
        )
    finally:
        svc.stop()


def test_two_postgres_backed_services_deliver_each_event_once(
    cluster: Cluster, namespace: str, receiver: Receiver, tmp_path: Path, postgres_dsn: str
) -> None:
    from tests.pg import create_database, drop_database

    dsn = create_database(postgres_dsn, "two_replicas")
    replicas = [
        DeliveryProcess(cluster.kubeconfig, tmp_path, dsn, name=f"replica-{n}") for n in range(2)
    ]
    try:
        for replica in replicas:
            replica.start()
        producer = setup_app(
            cluster,
            namespace,
            receiver,
            endpoint("a", receiver.url("/a")),
            endpoint("b", receiver.url("/b")),
        )
        for n in range(100):  # producers spread over both replicas, as a Service would
            assert emit(replicas[n % 2], namespace, producer, data={"n": n}).status_code == 202
        eventually(
            lambda: len(receiver.received("/a")) >= 100 and len(receiver.received("/b")) >= 100,
            timeout=60,
            what="all delivered",
        )
        time.sleep(1)
        for path in ("/a", "/b"):
            ids = [r["headers"]["webhook-id"] for r in receiver.received(path)]
            assert len(ids) == 100
            assert len(set(ids)) == 100  # no event delivered twice
    finally:
        for replica in replicas:
            replica.stop()
        drop_database(postgres_dsn, dsn)


def test_endpoint_deleted_while_the_service_was_down_is_cancelled(
    cluster: Cluster, namespace: str, receiver: Receiver, tmp_path: Path
) -> None:
    svc = DeliveryProcess(
        cluster.kubeconfig, tmp_path, f"sqlite:///{tmp_path / 'd.db'}", name="down"
    )
    svc.start()
    try:
        producer = setup_app(
            cluster, namespace, receiver, endpoint("ep", receiver.url("/hook"), active=False)
        )
        emit(svc, namespace, producer)
        assert deliveries(svc, namespace, producer, "ep", status="held")["items"]
        svc.stop()
        cluster.kubectl("delete", "whe", "ep", "-n", namespace)
        svc.start()

        def cancelled() -> bool:
            page = httpx.get(
                f"{svc.url}/v1/namespaces/{namespace}/apps/billing/deliveries",
                headers=producer.headers,
                params={"status": "cancelled"},
                timeout=10,
            ).json()
            return len(page["items"]) == 1

        eventually(cancelled, what="held delivery of the deleted endpoint cancelled")
    finally:
        svc.stop()
