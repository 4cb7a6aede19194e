"""`kubectl webhooks`: the kubectl plugin (the console script `kubectl-webhooks`, which
kubectl finds on PATH). The commands live in `webhook_operator.plugin`; this entry point
only turns failures into one line on stderr and the documented exit code, because the
people reading it are on support duty, not debugging Python."""

from __future__ import annotations

import os
import sys

from webhook_operator.plugin.commands import PROG, app
from webhook_operator.plugin.errors import Exit, PluginError

DEBUG_ENV = "WEBHOOK_OPERATOR_DEBUG"

__all__ = ["app", "main"]


def main() -> None:
    from webhook_operator.plugin import render

    try:
        app(prog_name=PROG)
    except PluginError as exc:
        render.error(exc.message)
        sys.exit(int(exc.code))
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        render.error(
            f"unexpected {type(exc).__name__}: {exc} (a bug in {PROG};"
            f" {DEBUG_ENV}=1 shows the traceback)"
        )
        sys.exit(int(Exit.INTERNAL))


if __name__ == "__main__":
    main()
