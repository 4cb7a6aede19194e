"""Where the delivery service's resident memory at rest comes from: the modules it imports,
one at a time in a fresh interpreter, with the resident size each adds (a module's
dependencies count where they are first imported, so the order is the service's own:
the event loop, the HTTP server, the models, the Kubernetes client, the service). What
the service does not import (the generated Kubernetes clients, psycopg on SQLite, rich,
jsonschema until a catalog declares a schema) tests/unit/test_import_footprint.py keeps out.

    .venv/bin/python -m bench.import_memory

Nothing is started and nothing touches the network; each figure is VmRSS from /proc."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

MODULES = (
    "asyncio",
    "uvloop",
    "aiohttp",
    "aiohttp.web",
    "pydantic",
    "orjson",
    "prometheus_client",
    "typer",
    "webhook_operator.api.v1alpha1",
    "webhook_operator.api.delivery_wire",
    "webhook_operator.kube_rest",
    "webhook_operator.delivery.service",
    "webhook_operator.cli",
)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(modules: tuple[str, ...] = MODULES) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {"module": "(interpreter)", "adds_mb": 0.0, "rss_mb": rss_mb()}
    ]
    for name in modules:
        before = rss_mb()
        importlib.import_module(name)
        after = rss_mb()
        rows.append(
            {"module": name, "adds_mb": round(after - before, 1), "rss_mb": round(after, 1)}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    rows = measure()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['module']:36s} +{row['adds_mb']:6.1f} MB   {row['rss_mb']:6.1f} MB")


if __name__ == "__main__":
    main()
