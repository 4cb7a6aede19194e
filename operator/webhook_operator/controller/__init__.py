"""The control plane: reconciles WebhookApps and WebhookEndpoints (kopf watches them; a
keyed work queue runs level-based reconciles; one status writer writes status)."""
