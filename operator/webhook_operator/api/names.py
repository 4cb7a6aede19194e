"""Well-known names on Kubernetes objects: labels and annotations, in one place beside the
API models, so the operator, the delivery service, the portal and the CLI cannot drift
apart on a spelling. All of ours carry the `webhook-operator.dev/` prefix."""

from __future__ import annotations

from typing import Final

PREFIX: Final = "webhook-operator.dev/"

# --- on WebhookEndpoints --------------------------------------------------------------------
# Set to a new value (any string) to rotate the generated signing secret once.
ROTATE_ANNOTATION: Final = PREFIX + "rotate-secret"
# Set to a new value to clear an automatic disable (retries exhausted, 410 Gone).
ENABLE_ANNOTATION: Final = PREFIX + "enable"
# Who manages the endpoint's spec: "portal" for endpoints customers created through the
# portal. Endpoints without it came from Git (or kubectl) and the portal never changes them.
MANAGED_BY_LABEL: Final = PREFIX + "managed-by"
PORTAL_MANAGER: Final = "portal"
# The ticket subject that created a portal endpoint, and the one that changed it last.
CREATED_BY_ANNOTATION: Final = PREFIX + "created-by"
CHANGED_BY_ANNOTATION: Final = PREFIX + "changed-by"

# --- on the Secrets the operator generates ----------------------------------------------------
K8S_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGER: Final = "webhook-operator"
APP_LABEL: Final = PREFIX + "app"
ENDPOINT_LABEL: Final = PREFIX + "endpoint"

# --- Event reasons on WebhookEndpoints ---------------------------------------------------------
# Warning: deliveries stopped on their own (retries exhausted, 410 Gone); not for a pause.
ENDPOINT_DISABLED_EVENT: Final = "EndpointDisabled"
# Normal: deliveries succeed again after the endpoint was failing or disabled.
ENDPOINT_RECOVERED_EVENT: Final = "EndpointRecovered"

# --- Operational notifications (WebhookApp.spec.operationalEndpointRef) -------------------------
# Event types the operational endpoint receives, signed like any other event.
OPERATIONAL_FAILING: Final = "webhook-operator.endpoint.failing"
OPERATIONAL_DISABLED: Final = "webhook-operator.endpoint.disabled"
OPERATIONAL_RECOVERED: Final = "webhook-operator.endpoint.recovered"
# Warning Event on the app: its operationalEndpointRef names no existing endpoint.
OPERATIONAL_ENDPOINT_NOT_FOUND: Final = "OperationalEndpointNotFound"
