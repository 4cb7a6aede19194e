"""Exit codes and the one exception every layer raises to end the command.

Scripts branch on the exit code (retry when the service is unreachable, escalate when
RBAC refuses), so each kind of failure has its own code and they never change meaning."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    # The command ran but its answer is "no": verify found no valid signature, a ping
    # was not delivered.
    NEGATIVE = 1
    USAGE = 2  # bad flags or input, or a 4xx from the service not listed below
    # The delivery service, the portal or the Kubernetes API did not answer, or a 503.
    UNREACHABLE = 3
    DENIED = 4  # no credentials, or RBAC refused (401/403)
    NOT_FOUND = 5  # 404: no such app, endpoint or delivery
    SERVER = 6  # 5xx: the service failed or is not ready
    INTERNAL = 7  # a bug in the plugin itself


EPILOG = (
    "Exit codes: 0 success; 1 a negative answer (verify: invalid signature; ping: not"
    " delivered); 2 usage error or rejected request (4xx); 3 the delivery service, the"
    " portal or the Kubernetes API is unreachable, or answered 503 (retry later); 4 not"
    " authenticated or not allowed (401/403, the message names the missing RBAC rule);"
    " 5 not found (404); 6 server error (5xx); 7 a bug in the plugin"
    " (WEBHOOK_OPERATOR_DEBUG=1 shows the traceback)."
)


class PluginError(Exception):
    """A failure to report as one line on stderr, ending the command with `code`."""

    def __init__(self, message: str, code: Exit = Exit.USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
