"""What the HTTP APIs of the delivery service and the portal share: one error shape, one
way of reading and checking requests, one OpenAPI generator."""
