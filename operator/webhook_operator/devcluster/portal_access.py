"""How the dev playground opens its portal: as a platform would. A `portal-backend`
ServiceAccount in the sample namespace holds the RBAC verb `issue-tickets` on the sample
app (and nothing else); the playground gets a short-lived token for it with the
TokenRequest API and asks the portal for a manage ticket, whose portalUrl it prints and
keeps in its state file. The admin kubeconfig could issue tickets too, but the playground
shows the path a real backend takes, and so tests it at every start."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from kubernetes import client

BACKEND = "portal-backend"
ISSUE_VERB = "issue-tickets"
# The portal's cap unless configured otherwise; renewed before it ends (see REFRESH_AFTER).
TICKET_TTL = "1h"
REFRESH_AFTER = 30 * 60.0
SUBJECT = "playground/you"
# A token only for asking, right away, for one ticket.
TOKEN_SECONDS = 600


def backend_objects(namespace: str, app: str) -> list[dict[str, Any]]:
    """The backend's ServiceAccount, and a Role and RoleBinding letting it issue tickets
    for `app` only."""
    meta = {"name": BACKEND, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [
                {
                    "apiGroups": ["webhook-operator.dev"],
                    "resources": ["webhookapps"],
                    "resourceNames": [app],
                    "verbs": [ISSUE_VERB],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": BACKEND},
            "subjects": [{"kind": "ServiceAccount", "name": BACKEND, "namespace": namespace}],
        },
    ]


def backend_allowed(api: client.ApiClient, namespace: str, app: str) -> bool:
    """Whether the apiserver's authorizer already sees the RoleBinding. Asked before the
    portal is: a refusal the portal meets is cached there for 30 s."""
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{namespace}:{BACKEND}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            resource_attributes=client.V1ResourceAttributes(
                group="webhook-operator.dev",
                resource="webhookapps",
                verb=ISSUE_VERB,
                namespace=namespace,
                name=app,
            ),
        )
    )
    answer: Any = client.AuthorizationV1Api(api).create_subject_access_review(
        review, _request_timeout=(3, 5)
    )
    return bool(answer.status and answer.status.allowed)


def backend_token(api: client.ApiClient, namespace: str) -> str:
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_SECONDS)
    )
    answer: Any = client.CoreV1Api(api).create_namespaced_service_account_token(
        BACKEND, namespace, request, _request_timeout=(3, 5)
    )
    return str(answer.status.token)


class PortalAccessError(RuntimeError):
    """No ticket: the message says what the portal or the apiserver answered."""


async def open_portal(
    api: client.ApiClient, portal_url: str, namespace: str, app: str, limit: float = 45.0
) -> str:
    """A fresh manage ticket's portalUrl for `app`, issued as the backend would ask for it."""
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(backend_allowed, api, namespace, app):
        if time.monotonic() > deadline:
            raise PortalAccessError(
                f"the apiserver does not yet let {BACKEND} issue tickets for {app}"
            )
        await asyncio.sleep(0.3)
    token = await asyncio.to_thread(backend_token, api, namespace)
    url = f"{portal_url}/v1/namespaces/{namespace}/apps/{app}/access-tickets"
    body = {"scope": "manage", "ttl": TICKET_TTL, "subject": SUBJECT}
    async with httpx.AsyncClient(timeout=10.0) as http:
        while True:
            # 404: the portal's watch has not seen the sample app yet; 503: the apiserver
            # was briefly unavailable to it. Anything else will not pass by waiting.
            retry = True
            try:
                response = await http.post(
                    url, json=body, headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError as exc:
                problem = f"the portal did not answer ({exc!r})"
            else:
                if response.status_code == 201:
                    return str(response.json()["portalUrl"])
                problem = f"the portal answered {response.status_code}: {response.text[:300]}"
                retry = response.status_code in (404, 503)
            if not retry or time.monotonic() > deadline:
                raise PortalAccessError(problem)
            await asyncio.sleep(0.3)
