"""Secrets out of the spec, end to end: header values from Secrets (headersFrom), a private
CA to trust (tls.caSecretRef), a client certificate for mutual TLS
(tls.clientCertSecretRef) and a previous signing key in a user's Secret. Real apiserver,
operator and delivery service; receivers on 127.0.0.1, the TLS ones with certificates made
here by a test CA."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client
from standardwebhooks.webhooks import Webhook

from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Producer, Receiver, eventually
from tests.integration.test_delivery import app, apply, deliveries, emit, endpoint, get, ready
from tests.integration.test_kubectl_plugin import Plugin, plugin_env  # noqa: F401 (a fixture)
from webhook_operator.delivery.http1 import ConnectionPool, TLSChoice
from webhook_operator.tls_context import TLSMaterial, client_context

pytestmark = pytest.mark.usefixtures("operator")

API_KEY = "sk_live_hunter2-value-never-logged"


@pytest.fixture(autouse=True)
def _services(operator: OperatorProcess, delivery_service: DeliveryProcess) -> None:
    assert delivery_service.process is not None
    assert delivery_service.process.poll() is None, delivery_service.log()[-3000:]


# --- key material -----------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], server: bool
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer[1], hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


@dataclass(frozen=True)
class Pki:
    server_ca: bytes  # issues the receivers' certificate; no system trust store holds it
    server_chain: Path
    client_ca: bytes  # the receivers trust client certificates it issued
    client_cert: bytes
    client_key: bytes
    other_cert: bytes  # a second client certificate from the same CA
    other_key: bytes

    def server(self, require_client_cert: bool) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_chain)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=self.client_ca.decode())
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("request-secrets-tls")
    server_ca = _ca("receiver-test-ca")
    client_ca = _ca("client-test-ca")
    cert, key = _leaf("localhost", server_ca, server=True)
    chain = directory / "server.pem"
    chain.write_bytes(cert + key)
    client_cert, client_key = _leaf("webhook-client", client_ca, server=False)
    other_cert, other_key = _leaf("other-client", client_ca, server=False)
    pem = serialization.Encoding.PEM
    return Pki(
        server_ca[0].public_bytes(pem),
        chain,
        client_ca[0].public_bytes(pem),
        client_cert,
        client_key,
        other_cert,
        other_key,
    )


@pytest.fixture
def mtls_receiver(pki: Pki) -> Iterator[Receiver]:
    r = Receiver(ssl_context=pki.server(require_client_cert=True))
    yield r
    r.close()


@pytest.fixture
def tls_receiver(pki: Pki) -> Iterator[Receiver]:
    r = Receiver(ssl_context=pki.server(require_client_cert=False))
    yield r
    r.close()


# --- helpers -----------------------------------------------------------------------------


def create_secret(
    cluster: Cluster,
    namespace: str,
    name: str,
    data: dict[str, bytes | str],
    type_: str = "Opaque",
) -> None:
    encoded = {
        k: base64.b64encode(v.encode() if isinstance(v, str) else v).decode()
        for k, v in data.items()
    }
    client.CoreV1Api(cluster.api).create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name=name), type=type_, data=encoded),
    )


def patch_secret(cluster: Cluster, namespace: str, name: str, data: dict[str, str | None]) -> None:
    encoded = {
        k: None if v is None else base64.b64encode(v.encode()).decode() for k, v in data.items()
    }
    client.CoreV1Api(cluster.api).patch_namespaced_secret(name, namespace, {"data": encoded})


def condition(cluster: Cluster, namespace: str, name: str, type_: str) -> dict[str, Any]:
    obj = get(cluster, namespace, "webhookendpoints", name)
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return {}


def not_ready(cluster: Cluster, namespace: str, name: str, reason: str) -> str:
    """Waits for Ready=False with `reason`; the message."""

    def check() -> str | None:
        c = condition(cluster, namespace, name, "Ready")
        if c.get("status") == "False" and c.get("reason") == reason:
            return str(c.get("message", ""))
        return None

    message = eventually(check, what=f"{name} Ready=False {reason}")
    assert isinstance(message, str)
    return message


def attempt_errors(
    svc: DeliveryProcess, namespace: str, producer: Producer, name: str
) -> list[str]:
    errors = []
    for item in deliveries(svc, namespace, producer, name)["items"]:
        detail = httpx.get(
            f"{svc.url}/v1/namespaces/{namespace}/deliveries/{item['id']}",
            headers=producer.headers,
            timeout=10,
        ).json()
        errors += [a.get("error") or "" for a in detail["attemptLog"]]
    return errors


def first_error(svc: DeliveryProcess, namespace: str, producer: Producer, name: str) -> str:
    found = eventually(
        lambda: [e for e in attempt_errors(svc, namespace, producer, name) if e],
        timeout=30,
        what=f"a failed attempt of {name}",
    )
    assert isinstance(found, list)
    return str(found[0])


def start(cluster: Cluster, namespace: str, *endpoints: dict[str, Any]) -> Producer:
    apply(cluster, namespace, app(), *endpoints)
    return Producer(cluster, namespace, ["billing"])


# A first retry soon (the failed attempt shows quickly), then enough for a minute and more.
SLOW_RETRIES = {"schedule": ["1s", *["5s"] * 19]}


# --- headersFrom -------------------------------------------------------------------------


def test_header_from_a_secret_arrives_and_is_kept_out_of_the_delivery_log(
    cluster: Cluster,
    namespace: str,
    receiver: Receiver,
    delivery_service: DeliveryProcess,
    operator: OperatorProcess,
) -> None:
    # A file's final newline (kubectl create secret --from-file) is not part of the value.
    create_secret(cluster, namespace, "receiver-auth", {"token": API_KEY + "\n"})
    ep = endpoint(
        "ep",
        receiver.url("/hook"),
        headers={"X-Team": "billing"},
        headersFrom=[
            {"name": "X-Api-Key", "secretKeyRef": {"name": "receiver-auth", "key": "token"}}
        ],
    )
    producer = start(cluster, namespace, ep)
    ready(cluster, namespace, "ep")
    assert condition(cluster, namespace, "ep", "RequestSecretsReady")["reason"] == "SecretsFound"
    emit(delivery_service, namespace, producer)
    (request,) = eventually(lambda: receiver.received("/hook"), what="delivery arrives")  # type: ignore[misc]
    assert request["headers"]["X-Api-Key"] == API_KEY
    assert request["headers"]["X-Team"] == "billing"

    def delivered() -> bool:
        items = deliveries(delivery_service, namespace, producer, "ep")["items"]
        return bool(items) and items[0]["status"] == "delivered"

    eventually(delivered, what="delivered")
    listed = deliveries(delivery_service, namespace, producer, "ep")
    detail = httpx.get(
        f"{delivery_service.url}/v1/namespaces/{namespace}/deliveries/{listed['items'][0]['id']}",
        headers=producer.headers,
        timeout=10,
    ).text
    status = json.dumps(get(cluster, namespace, "webhookendpoints", "ep"))
    for shown in (json.dumps(listed), detail, status, delivery_service.log(), operator.log()):
        assert API_KEY not in shown

    # A new value in the Secret is sent without touching the endpoint.
    patch_secret(cluster, namespace, "receiver-auth", {"token": "rotated-key"})

    def rotated() -> bool:
        emit(delivery_service, namespace, producer)
        time.sleep(0.5)
        last = receiver.received("/hook")[-1]
        return bool(last["headers"]["X-Api-Key"] == "rotated-key")

    eventually(rotated, timeout=40, interval=1.0, what="the new header value is sent")


def test_header_secret_problems_show_on_the_endpoint_and_hold_back_the_attempt(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    ep = endpoint(
        "ep",
        receiver.url("/hook"),
        retry=SLOW_RETRIES,
        headersFrom=[{"name": "Authorization", "secretKeyRef": {"name": "auth", "key": "bearer"}}],
    )
    producer = start(cluster, namespace, ep)
    message = not_ready(cluster, namespace, "ep", "SecretNotFound")
    assert message == "Secret auth named in headersFrom does not exist in the endpoint's namespace"
    emit(delivery_service, namespace, producer)
    error = first_error(delivery_service, namespace, producer, "ep")
    assert error == (
        "not sent: Secret auth named in headersFrom does not exist in the endpoint's namespace"
    )
    assert receiver.received("/hook") == []

    create_secret(cluster, namespace, "auth", {"other": "x"})
    message = not_ready(cluster, namespace, "ep", "SecretKeyMissing")
    assert message == "Secret auth named in headersFrom has no key 'bearer' (keys: other)"

    patch_secret(cluster, namespace, "auth", {"bearer": "Bearer abc\r\nX-Injected: 1"})
    message = not_ready(cluster, namespace, "ep", "SecretInvalid")
    assert message == (
        "header Authorization: Secret auth key 'bearer' holds a line break or NUL, which a"
        " header value cannot"
    )
    assert "X-Injected" not in json.dumps(get(cluster, namespace, "webhookendpoints", "ep"))

    patch_secret(cluster, namespace, "auth", {"bearer": "Bearer abc"})
    ready(cluster, namespace, "ep")
    got = eventually(lambda: receiver.received("/hook"), timeout=30, what="sent once fixed")
    assert isinstance(got, list)
    assert got[0]["headers"]["Authorization"] == "Bearer abc"


# --- TLS -----------------------------------------------------------------------------------


def _tls_secrets(cluster: Cluster, namespace: str, pki: Pki) -> None:
    create_secret(cluster, namespace, "receiver-ca", {"ca.crt": pki.server_ca})
    create_secret(
        cluster,
        namespace,
        "client-tls",
        {"tls.crt": pki.client_cert, "tls.key": pki.client_key},
        type_="kubernetes.io/tls",
    )


def test_mutual_tls_with_a_client_certificate_from_a_secret(
    cluster: Cluster,
    namespace: str,
    mtls_receiver: Receiver,
    delivery_service: DeliveryProcess,
    pki: Pki,
) -> None:
    _tls_secrets(cluster, namespace, pki)
    ep = endpoint(
        "ep",
        mtls_receiver.url("/hook"),
        tls={"caSecretRef": {"name": "receiver-ca"}, "clientCertSecretRef": {"name": "client-tls"}},
    )
    producer = start(cluster, namespace, ep)
    ready(cluster, namespace, "ep")
    emit(delivery_service, namespace, producer)
    (request,) = eventually(lambda: mtls_receiver.received("/hook"), what="delivered over mTLS")  # type: ignore[misc]
    subject = dict(item for rdn in request["peer_cert"]["subject"] for item in rdn)
    assert subject["commonName"] == "webhook-client"


def test_mutual_tls_without_a_client_certificate_fails_with_a_clear_error(
    cluster: Cluster,
    namespace: str,
    mtls_receiver: Receiver,
    delivery_service: DeliveryProcess,
    pki: Pki,
) -> None:
    _tls_secrets(cluster, namespace, pki)
    ep = endpoint(
        "ep",
        mtls_receiver.url("/hook"),
        retry=SLOW_RETRIES,
        tls={"caSecretRef": {"name": "receiver-ca"}},
    )
    producer = start(cluster, namespace, ep)
    ready(cluster, namespace, "ep")
    emit(delivery_service, namespace, producer)
    error = first_error(delivery_service, namespace, producer, "ep")
    assert error.startswith("the receiver ended TLS:"), error
    assert "CERTIFICATE_REQUIRED" in error.upper(), error
    assert mtls_receiver.received("/hook") == []


def test_ca_secret_ref_trusts_a_private_ca(
    cluster: Cluster,
    namespace: str,
    tls_receiver: Receiver,
    delivery_service: DeliveryProcess,
    pki: Pki,
) -> None:
    create_secret(cluster, namespace, "receiver-ca", {"bundle.pem": pki.server_ca})
    trusting = endpoint(
        "trusting",
        tls_receiver.url("/trusting"),
        tls={"caSecretRef": {"name": "receiver-ca", "key": "bundle.pem"}},
    )
    default = endpoint("default", tls_receiver.url("/default"), retry=SLOW_RETRIES)
    producer = start(cluster, namespace, trusting, default)
    ready(cluster, namespace, "trusting")
    ready(cluster, namespace, "default")
    emit(delivery_service, namespace, producer)
    eventually(lambda: tls_receiver.received("/trusting"), what="delivered with the private CA")
    error = first_error(delivery_service, namespace, producer, "default")
    assert error.startswith("TLS certificate not trusted"), error
    assert tls_receiver.received("/default") == []


def test_unusable_tls_secrets_make_the_endpoint_not_ready(
    cluster: Cluster, namespace: str, delivery_service: DeliveryProcess, pki: Pki
) -> None:
    create_secret(cluster, namespace, "receiver-ca", {"ca.crt": "not a certificate"})
    create_secret(
        cluster,
        namespace,
        "client-tls",
        {"tls.crt": pki.client_cert, "tls.key": pki.other_key},  # a key of another certificate
        type_="kubernetes.io/tls",
    )
    create_secret(cluster, namespace, "half-tls", {"tls.crt": pki.client_cert})
    url = "https://127.0.0.1:1/hook"
    start(
        cluster,
        namespace,
        endpoint("bad-ca", url, tls={"caSecretRef": {"name": "receiver-ca"}}),
        endpoint("bad-pair", url, tls={"clientCertSecretRef": {"name": "client-tls"}}),
        endpoint("no-key", url, tls={"clientCertSecretRef": {"name": "half-tls"}}),
    )
    message = not_ready(cluster, namespace, "bad-ca", "InvalidTLSSecret")
    assert message.startswith(
        "Secret receiver-ca key 'ca.crt' does not hold a PEM CA certificate ("
    ), message
    message = not_ready(cluster, namespace, "bad-pair", "InvalidTLSSecret")
    assert message.startswith(
        "Secret client-tls: tls.crt and tls.key are not a PEM certificate and its unencrypted"
        " private key ("
    ), message
    message = not_ready(cluster, namespace, "no-key", "SecretKeyMissing")
    assert message == (
        "Secret half-tls named in tls.clientCertSecretRef has no key 'tls.key' (keys: tls.crt)"
    )
    reason = condition(cluster, namespace, "bad-ca", "RequestSecretsReady")["reason"]
    assert reason == "InvalidTLSSecret"


def test_connections_are_never_shared_between_client_certificates(pki: Pki) -> None:
    """Two endpoints to one receiver with different client certificates: each request
    arrives with its own endpoint's certificate, though the pool keeps connections."""

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    def choice(cert: bytes, key: bytes) -> TLSChoice:
        material = TLSMaterial(pki.server_ca, "ca", cert, key, "client")
        return TLSChoice(client_context(material), material.fingerprint())

    async def run(url: str) -> None:
        pool = ConnectionPool(resolve, "test")
        first = choice(pki.client_cert, pki.client_key)
        second = choice(pki.other_cert, pki.other_key)
        try:
            for tls in (first, second, first, second):
                response = await pool.post(url, {}, b"{}", 5.0, tls)
                assert response.status == 204
        finally:
            await pool.close()

    receiver = Receiver(ssl_context=pki.server(require_client_cert=True))
    try:
        asyncio.run(run(receiver.url("/pool")))
        names = [
            dict(item for rdn in r["peer_cert"]["subject"] for item in rdn)["commonName"]
            for r in receiver.received("/pool")
        ]
    finally:
        receiver.close()
    assert names == ["webhook-client", "other-client", "webhook-client", "other-client"]


# --- previous key of a user's signing Secret ------------------------------------------------


def _whsec(seed: bytes) -> str:
    return "whsec_" + base64.b64encode(seed * 32).decode()


def test_previous_key_in_a_users_secret_adds_a_second_signature(
    cluster: Cluster, namespace: str, receiver: Receiver, delivery_service: DeliveryProcess
) -> None:
    old, new = _whsec(b"o"), _whsec(b"n")
    create_secret(cluster, namespace, "mine", {"signing": new, "signing.previous": old})
    ep = endpoint("ep", receiver.url("/hook"), secretRef={"name": "mine", "key": "signing"})
    producer = start(cluster, namespace, ep)
    ready(cluster, namespace, "ep")
    assert condition(cluster, namespace, "ep", "SecretReady")["message"] == (
        "using Secret mine; deliveries are also signed with its key 'signing.previous' until it"
        " is removed"
    )
    emit(delivery_service, namespace, producer)
    (request,) = eventually(lambda: receiver.received("/hook"), what="delivery arrives")  # type: ignore[misc]
    assert len(request["headers"]["webhook-signature"].split()) == 2
    for secret in (old, new):
        Webhook(secret).verify(request["body"], request["headers"])

    # Removing the previous key ends the grace period.
    patch_secret(cluster, namespace, "mine", {"signing.previous": None})

    def one_signature() -> bool:
        emit(delivery_service, namespace, producer)
        time.sleep(0.5)
        last = receiver.received("/hook")[-1]
        return len(last["headers"]["webhook-signature"].split()) == 1

    eventually(one_signature, timeout=40, interval=1.0, what="one signature")
    last = receiver.received("/hook")[-1]
    Webhook(new).verify(last["body"], last["headers"])


def test_invalid_previous_key_is_reported(cluster: Cluster, namespace: str) -> None:
    create_secret(
        cluster, namespace, "mine", {"secret": _whsec(b"n"), "secret.previous": "whsec_x"}
    )
    start(
        cluster, namespace, endpoint("ep", "https://127.0.0.1:1/hook", secretRef={"name": "mine"})
    )
    message = not_ready(cluster, namespace, "ep", "SecretInvalid")
    assert message.startswith("Secret mine key 'secret.previous': "), message
    assert "whsec_x" not in message


def test_plugin_output_never_shows_a_header_value(
    cluster: Cluster,
    namespace: str,
    receiver: Receiver,
    delivery_service: DeliveryProcess,
    plugin_env: dict[str, str],  # noqa: F811 (the fixture imported above)
) -> None:
    create_secret(cluster, namespace, "receiver-auth", {"token": API_KEY})
    ep = endpoint(
        "ep",
        receiver.url("/hook"),
        headersFrom=[
            {"name": "X-Api-Key", "secretKeyRef": {"name": "receiver-auth", "key": "token"}}
        ],
    )
    start(cluster, namespace, ep)
    ready(cluster, namespace, "ep")
    plugin = Plugin(cluster, delivery_service, namespace, plugin_env)
    plugin.run("emit", "billing", "invoice.paid")
    eventually(lambda: receiver.received("/hook"), what="delivered")

    def shown() -> str:
        listed = plugin.json("deliveries", "--endpoint", "ep")
        assert listed["items"]
        assert listed["items"][0]["status"] == "delivered"
        delivery_id = listed["items"][0]["id"]
        return (
            json.dumps(listed)
            + plugin.run("deliveries", "--endpoint", "ep").stdout
            + plugin.run("delivery", delivery_id).stdout
            + json.dumps(plugin.json("delivery", delivery_id))
        )

    output = eventually(shown, what="the plugin shows the delivery")
    assert isinstance(output, str)
    assert API_KEY not in output
