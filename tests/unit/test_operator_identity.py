"""The operator's Lease identity: two replicas must never hold it under one name."""

from __future__ import annotations

from webhook_operator.controller.runner import default_identity


def test_the_pod_name_is_the_identity_in_a_pod() -> None:
    assert default_identity({"POD_NAME": "webhook-operator-7d9c-abcde"}) == (
        "webhook-operator-7d9c-abcde"
    )


def test_outside_a_pod_the_hostname_and_process_tell_replicas_apart() -> None:
    first = default_identity({})
    assert first.rsplit("-", 1)[1].isdigit()
    assert default_identity({"POD_NAME": ""}) == first
