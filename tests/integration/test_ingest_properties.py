"""A property of ingest, over generated event bodies against the real delivery service:
any JSON object up to the size limit that the API accepts is delivered with its data
unchanged (the same JSON, byte for byte once serialized the same way, signed so the
public `standardwebhooks` library verifies it); anything it refuses gets a 4xx JSON reason;
nothing else stored changes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from standardwebhooks.webhooks import Webhook

from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Receiver, eventually
from tests.integration.test_hostile_input import Tenant, open_tenant

LIMIT = 256 * 1024

# JSON values as producers send them: every scalar kind (integers beyond 64 bits too,
# floats of every size, any Unicode text including control characters), nested.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
event_types = st.from_regex(
    r"[a-z0-9][a-z0-9_-]{0,8}(\.[a-z0-9][a-z0-9_-]{0,8}){0,3}", fullmatch=True
)
good_events = st.fixed_dictionaries(
    {"type": event_types, "data": st.dictionaries(st.text(max_size=10), values, max_size=6)},
    optional={"id": st.text(min_size=1, max_size=20)},
)
# Near misses: fields of the wrong kind, stray fields, odd types, or raw bytes.
bad_events = st.fixed_dictionaries(
    {"type": st.text(max_size=12) | values, "data": values},
    optional={"id": values, "extra": values},
)
raw_bodies = st.binary(max_size=200) | st.text(max_size=200).map(
    lambda t: t.encode("utf-8", "surrogatepass")
)


def canonical(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


@pytest.fixture(scope="module")
def property_tenant(
    cluster: Cluster, module_receiver: Receiver, operator: OperatorProcess
) -> Iterator[Tenant]:
    yield from open_tenant(cluster, module_receiver, "p")


def test_accepted_events_arrive_unchanged_and_refusals_store_nothing(
    cluster: Cluster,
    delivery_service: DeliveryProcess,
    property_tenant: Tenant,
) -> None:
    namespace, producer = property_tenant.namespace, property_tenant.producer
    url = f"{delivery_service.url}/v1/namespaces/{namespace}/apps/billing/events"
    headers = {**producer.headers, "Content-Type": "application/json"}
    accepted: dict[str, bytes] = {}  # event id -> canonical data sent
    refused = 0
    http = httpx.Client(timeout=30)

    def post(body: bytes) -> httpx.Response:
        return http.post(url, content=body, headers=headers)

    def check(body: bytes, sent: Any) -> None:
        nonlocal refused
        response = post(body)
        if response.status_code == 202:
            assert isinstance(sent, dict)
            answer = response.json()
            if not answer["duplicate"]:
                accepted[answer["eventId"]] = canonical(sent.get("data", {}))
            return
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["error"]["reason"]
        refused += 1

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(st.one_of(good_events, bad_events))
    def objects(event: dict[str, Any]) -> None:
        body = canonical(event)
        if len(body) <= LIMIT:
            check(body, event)

    @settings(max_examples=60, deadline=None, database=None)
    @given(raw_bodies)
    def raw(body: bytes) -> None:
        try:
            sent = json.loads(body)
        except ValueError:
            sent = None
        check(body, sent)

    try:
        objects()
        raw()
    finally:
        http.close()
    assert accepted, "no generated event was accepted: the strategies are off"
    assert refused, "no generated event was refused: the strategies are off"

    def all_arrived() -> bool:
        ids = {r["headers"]["webhook-id"] for r in property_tenant.receiver.received("/p")}
        return set(accepted) <= ids

    eventually(all_arrived, timeout=60, what="every accepted event is delivered")
    secret_data = (
        client.CoreV1Api(cluster.api).read_namespaced_secret("ep-signing-secret", namespace).data
    )
    secret = base64.b64decode(secret_data["secret"]).decode()
    for request in property_tenant.receiver.received("/p"):
        payload = Webhook(secret).verify(request["body"], request["headers"])
        event_id = request["headers"]["webhook-id"]
        assert canonical(payload["data"]) == accepted[event_id], event_id
    # Nothing but the accepted events became deliveries.
    stored: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(
            f"{delivery_service.url}/v1/namespaces/{namespace}/apps/billing/deliveries",
            params=params,
            headers=producer.headers,
            timeout=30,
        ).json()
        stored |= {item["eventId"] for item in page["items"]}
        cursor = page["next"]
        if not cursor:
            break
    assert stored == set(accepted)
