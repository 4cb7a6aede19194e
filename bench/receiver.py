"""A receiver for benchmarks: answers 204 and records when each delivery arrived, in its
own process so it does not share the delivery service's event loop.

`GET /stats`: count and first/last arrival (epoch seconds). `GET /arrivals`: the arrival
times by `webhook-id`, for latency."""

from __future__ import annotations

import sys
import time
from collections import defaultdict

from aiohttp import web


def main(port: int) -> None:
    state = {"count": 0, "first": 0.0, "last": 0.0}
    arrivals: dict[str, list[float]] = defaultdict(list)

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        if not state["count"]:
            state["first"] = now
        state["count"] += 1
        state["last"] = now
        arrivals[request.headers.get("webhook-id", "")].append(now)
        return web.Response(status=204)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(state)

    async def get_arrivals(_: web.Request) -> web.Response:
        return web.json_response(arrivals)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    app.router.add_get("/stats", stats)
    app.router.add_get("/arrivals", get_arrivals)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
