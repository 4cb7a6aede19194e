"""The Standard Webhooks signing scheme, checked against itself and the public library."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from webhook_operator import signing
from webhook_operator.signing import InvalidSecret, InvalidSignature

NOW = 1_700_000_000
BODY = json.dumps({"type": "invoice.paid", "data": {"id": "in_1"}}).encode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


@pytest.fixture
def secret() -> str:
    return signing.generate_secret()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# --- secrets ---------------------------------------------------------------------------


def test_generated_secret_has_the_standard_form() -> None:
    secret = signing.generate_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+={0,2}", secret)
    assert len(signing.decode_secret(secret)) == 32


@pytest.mark.parametrize("nbytes", [24, 32, 64])
def test_generated_secret_holds_the_requested_bytes(nbytes: int) -> None:
    assert len(signing.decode_secret(signing.generate_secret(nbytes))) == nbytes


def test_generated_secrets_differ() -> None:
    assert signing.generate_secret() != signing.generate_secret()


def test_generate_refuses_short_secrets() -> None:
    with pytest.raises(ValueError, match="at least 24"):
        signing.generate_secret(16)


def test_decode_strips_surrounding_whitespace() -> None:
    key = bytes(range(32))
    assert signing.decode_secret(f"  whsec_{b64(key)}\n") == key


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (b64(bytes(32)), "the secret must start with whsec_"),
        ("WHSEC_" + b64(bytes(32)), "the secret must start with whsec_"),
        ("whsec_not base64!", "the part after whsec_ is not valid base64"),
        ("whsec_" + b64(bytes(32)).rstrip("="), "the part after whsec_ is not valid base64"),
        ("whsec_" + b64(bytes(16)), "at least 24 random bytes, this one has 16"),
        ("whsec_", "at least 24 random bytes, this one has 0"),
    ],
)
def test_decode_explains_what_is_wrong(secret: str, message: str) -> None:
    with pytest.raises(InvalidSecret, match=re.escape(message)):
        signing.decode_secret(secret)


def test_invalid_secret_is_a_value_error() -> None:
    assert issubclass(InvalidSecret, ValueError)
    assert issubclass(InvalidSignature, ValueError)


# --- signing and verifying -------------------------------------------------------------


def test_sign_matches_the_specification() -> None:
    # Example from the Standard Webhooks specification.
    key = signing.decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = signing.sign(
        key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_headers_carry_id_timestamp_and_signature(secret: str) -> None:
    key = signing.decode_secret(secret)
    headers = signing.webhook_headers([key], MSG_ID, NOW, BODY)
    assert headers == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(NOW),
        "webhook-signature": signing.sign(key, MSG_ID, NOW, BODY),
    }


def test_round_trip(secret: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW, BODY)
    signing.verify(secret, headers, BODY, now=NOW)


def test_verify_accepts_raw_keys_and_lists(secret: str) -> None:
    key = signing.decode_secret(secret)
    headers = signing.webhook_headers([key], MSG_ID, NOW, BODY)
    signing.verify(key, headers, BODY, now=NOW)
    signing.verify([signing.generate_secret(), secret], headers, BODY, now=NOW)


def test_header_names_are_case_insensitive(secret: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW, BODY)
    signing.verify(secret, {k.title(): v for k, v in headers.items()}, BODY, now=NOW)


def test_two_keys_give_two_signatures_each_verifying() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    keys = [signing.decode_secret(old), signing.decode_secret(new)]
    headers = signing.webhook_headers(keys, MSG_ID, NOW, BODY)
    assert headers["webhook-signature"].split(" ") == [
        signing.sign(key, MSG_ID, NOW, BODY) for key in keys
    ]
    signing.verify(old, headers, BODY, now=NOW)
    signing.verify(new, headers, BODY, now=NOW)
    with pytest.raises(InvalidSignature, match="no signature matched"):
        signing.verify(signing.generate_secret(), headers, BODY, now=NOW)


def test_signing_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        signing.signature_header([], MSG_ID, NOW, BODY)


def test_tampered_body_fails(secret: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW, BODY)
    with pytest.raises(InvalidSignature, match="no signature matched"):
        signing.verify(secret, headers, BODY + b" ", now=NOW)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp"])
def test_tampered_header_fails(secret: str, header: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW, BODY)
    headers[header] = "msg_other" if header == "webhook-id" else str(NOW + 1)
    with pytest.raises(InvalidSignature, match="no signature matched"):
        signing.verify(secret, headers, BODY, now=NOW)


def test_wrong_key_fails(secret: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW, BODY)
    with pytest.raises(InvalidSignature, match="no signature matched"):
        signing.verify(signing.generate_secret(), headers, BODY, now=NOW)


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(-301, "too old: 301s before now"), (301, "too new: 301s after now")],
)
def test_timestamp_outside_tolerance_fails(secret: str, offset: int, reason: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW + offset, BODY)
    with pytest.raises(InvalidSignature, match=reason):
        signing.verify(secret, headers, BODY, now=NOW)


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamp_at_the_edge_of_tolerance_passes(secret: str, offset: int) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW + offset, BODY)
    signing.verify(secret, headers, BODY, now=NOW)


def test_tolerance_is_configurable(secret: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW - 60, BODY)
    with pytest.raises(InvalidSignature, match="too old"):
        signing.verify(secret, headers, BODY, now=NOW, tolerance=30)


def test_verify_defaults_to_the_current_time(secret: str) -> None:
    now = int(time.time())
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, now, BODY)
    signing.verify(secret, headers, BODY)
    stale = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, now - 3600, BODY)
    with pytest.raises(InvalidSignature, match="too old"):
        signing.verify(secret, stale, BODY)


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_named(secret: str, header: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW, BODY)
    del headers[header]
    with pytest.raises(InvalidSignature, match=f"the {header} header is missing"):
        signing.verify(secret, headers, BODY, now=NOW)


@pytest.mark.parametrize("value", ["soon", "1.5", "-1", "+1700000000", "01700000000"])
def test_malformed_timestamp_fails(secret: str, value: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW, BODY)
    headers["webhook-timestamp"] = value
    with pytest.raises(InvalidSignature, match="not a whole number of seconds"):
        signing.verify(secret, headers, BODY, now=NOW)


def test_unknown_versions_and_garbage_are_skipped(secret: str) -> None:
    key = signing.decode_secret(secret)
    good = signing.sign(key, MSG_ID, NOW, BODY)
    header = f"v2,abc v1,%%% nonsense {good}"
    signing.verify(
        secret,
        {"webhook-id": MSG_ID, "webhook-timestamp": str(NOW), "webhook-signature": header},
        BODY,
        now=NOW,
    )


def test_signature_under_another_version_is_not_accepted(secret: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW, BODY)
    headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    with pytest.raises(InvalidSignature, match="no signature matched"):
        signing.verify(secret, headers, BODY, now=NOW)


def test_verify_rejects_a_malformed_secret(secret: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW, BODY)
    with pytest.raises(InvalidSecret):
        signing.verify("not-a-secret", headers, BODY, now=NOW)


def test_verify_needs_a_key(secret: str) -> None:
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, NOW, BODY)
    with pytest.raises(ValueError, match="at least one secret"):
        signing.verify([], headers, BODY, now=NOW)


# --- interoperability with the public `standardwebhooks` library ------------------------
# The library checks timestamps against the real clock, so these sign with the current time.


def test_library_verifies_our_signature(secret: str) -> None:
    now = int(time.time())
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, now, BODY)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_library_verifies_each_of_two_signatures() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    now = int(time.time())
    keys = [signing.decode_secret(old), signing.decode_secret(new)]
    headers = signing.webhook_headers(keys, MSG_ID, now, BODY)
    assert Webhook(old).verify(BODY, headers) == json.loads(BODY)
    assert Webhook(new).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(BODY, headers)


def test_library_rejects_our_signature_of_another_body(secret: str) -> None:
    now = int(time.time())
    headers = signing.webhook_headers([signing.decode_secret(secret)], MSG_ID, now, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"in_1", b"in_2"), headers)


def test_we_verify_the_library_signature(secret: str) -> None:
    now = int(time.time())
    signature = Webhook(secret).sign(MSG_ID, datetime.fromtimestamp(now, tz=UTC), BODY.decode())
    assert signature == signing.sign(signing.decode_secret(secret), MSG_ID, now, BODY)
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(now), "webhook-signature": signature}
    signing.verify(secret, headers, BODY, now=now)
    signing.verify(secret, headers, BODY)
    with pytest.raises(InvalidSignature, match="no signature matched"):
        signing.verify(signing.generate_secret(), headers, BODY, now=now)
