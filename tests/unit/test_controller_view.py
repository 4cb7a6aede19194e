"""The operator's view keeps objects as the apiserver sent them, less managedFields, in
less memory (interned keys and short strings)."""

from __future__ import annotations

import json

from webhook_operator.controller.store import without_managed_fields

RAW = (
    '{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ep-signing-secret",'
    ' "managedFields": [{"manager": "kubectl"}], "labels": {"webhook-operator.dev/app": "b"}},'
    ' "data": {"secret": "' + "QUJD" * 40 + '"}}'
)


def test_kept_objects_equal_what_was_sent_without_managed_fields() -> None:
    sent = json.loads(RAW)
    kept = without_managed_fields(sent)
    del sent["metadata"]["managedFields"]
    assert kept == sent
    assert "managedFields" in json.loads(RAW)["metadata"]  # the original is not changed


def test_two_objects_share_their_keys_and_short_values() -> None:
    first, second = (without_managed_fields(json.loads(RAW)) for _ in range(2))
    (key_1,) = (k for k in first["metadata"]["labels"])
    (key_2,) = (k for k in second["metadata"]["labels"])
    assert key_1 is key_2
    assert first["kind"] is second["kind"]
    assert first["data"]["secret"] is not second["data"]["secret"]  # long values stay apart
