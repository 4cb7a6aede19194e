"""A receiver for benchmarks: answers 204 and counts arrivals, in its own process so it
does not share the delivery service's event loop. `GET /stats` returns the count and the
first/last arrival times (monotonic clock of this machine)."""

from __future__ import annotations

import sys
import time

from aiohttp import web


def main(port: int) -> None:
    state = {"count": 0, "first": 0.0, "last": 0.0}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        if not state["count"]:
            state["first"] = now
        state["count"] += 1
        state["last"] = now
        return web.Response(status=204)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(state)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    app.router.add_get("/stats", stats)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
