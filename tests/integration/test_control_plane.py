"""The local control plane behaves like a cluster where the product depends on it:
ServiceAccount tokens, TokenReview, RBAC with the custom `emit` verb, garbage collection."""

from __future__ import annotations

import json
import time

from kubernetes import client

from tests.harness import Cluster


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_namespace_gets_a_default_service_account(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    wait_for(
        lambda: any(
            sa.metadata.name == "default"
            for sa in core.list_namespaced_service_account(namespace).items
        )
    )


def test_service_account_token_passes_token_review(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "producer", "-n", namespace)
    token = cluster.kubectl("create", "token", "producer", "-n", namespace).stdout.strip()
    review = client.AuthenticationV1Api(cluster.api).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
    )
    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{namespace}:producer"

    bogus = client.AuthenticationV1Api(cluster.api).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token[:-4] + "AAAA"))
    )
    assert not bogus.status.authenticated


def test_rbac_grants_the_emit_verb_per_app(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "producer", "-n", namespace)
    cluster.kubectl(
        "create",
        "role",
        "emit-billing",
        "-n",
        namespace,
        "--verb=emit",
        "--resource=webhookapps.webhook-operator.dev",
        "--resource-name=billing",
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "emit-billing",
        "-n",
        namespace,
        "--role=emit-billing",
        f"--serviceaccount={namespace}:producer",
    )
    user = f"system:serviceaccount:{namespace}:producer"

    def allowed(app: str) -> bool:
        review = client.AuthorizationV1Api(cluster.api).create_subject_access_review(
            client.V1SubjectAccessReview(
                spec=client.V1SubjectAccessReviewSpec(
                    user=user,
                    groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                    resource_attributes=client.V1ResourceAttributes(
                        group="webhook-operator.dev",
                        resource="webhookapps",
                        verb="emit",
                        namespace=namespace,
                        name=app,
                    ),
                )
            )
        )
        return bool(review.status.allowed)

    assert allowed("billing")
    assert not allowed("payroll")


def test_owned_secret_is_garbage_collected(cluster: Cluster, namespace: str) -> None:
    # Not named <endpoint>-signing-secret: the session's operator may be running (the
    # portal tests start it) and would create that one first.
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "webhook-operator.dev/v1alpha1",
                "kind": "WebhookEndpoint",
                "metadata": {"name": "ep"},
                "spec": {"appRef": {"name": "a"}, "url": "https://example.com", "events": ["x"]},
            }
        ),
    )
    owner = json.loads(
        cluster.kubectl("get", "webhookendpoint", "ep", "-n", namespace, "-o", "json").stdout
    )
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="ep-owned-data",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="webhook-operator.dev/v1alpha1",
                        kind="WebhookEndpoint",
                        name="ep",
                        uid=owner["metadata"]["uid"],
                    )
                ],
            ),
            string_data={"secret": "whsec_x"},
        ),
    )
    cluster.kubectl("delete", "webhookendpoint", "ep", "-n", namespace)
    # The garbage collector learns new resource types by rediscovery every 30s.
    wait_for(
        timeout=90,
        predicate=lambda: (
            not [
                s
                for s in core.list_namespaced_secret(namespace).items
                if s.metadata.name == "ep-owned-data"
            ]
        ),
    )
