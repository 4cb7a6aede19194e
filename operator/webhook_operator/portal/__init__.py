"""The portal: the third role of the binary (`webhook-operator portal`), serving the
platform's own customers. It issues short-lived access tickets to the platform's backend
(RBAC verb `issue-tickets` on a WebhookApp) and serves the tenant API under /v1/portal/,
confined to the ticket's app. Endpoints and secrets stay Kubernetes objects; deliveries,
pings, resends and replays go through the delivery service's own API. The portal holds no
database and no state two replicas must agree on beyond the ticket key in a Secret."""
