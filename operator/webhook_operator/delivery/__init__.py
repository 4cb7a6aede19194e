"""The data plane: the delivery service (ingest, fan-out, signed delivery, retries,
history, replay). It reads WebhookApps, WebhookEndpoints and Secrets from Kubernetes and
keeps events, deliveries and attempts in its store."""
