"""What a delivery service on SQLite loads: not psycopg (about 11 MB resident, see
docs/benchmarks.md), which only a PostgreSQL store needs, and none of the generated
Kubernetes clients (kubernetes_asyncio alone is about 36 MB): it talks to the apiserver
through webhook_operator.kube_rest."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
# Generated Kubernetes clients; the CLI's printing (rich); catalog schemas (jsonschema, loaded
# with the first schema); kubeconfig parsing (yaml, not needed in a Pod); CEL (first filter).
HEAVY = ("kubernetes_asyncio", "kubernetes", "kopf", "httpx", "rich", "jsonschema", "yaml",
         "cel_expr_python")
import webhook_operator.cli, webhook_operator.delivery.service
from webhook_operator.store.factory import open_store
open_store("sqlite:///unused.db")
print("psycopg" in sys.modules, "psycopg_pool" in sys.modules)
print(sorted(m for m in HEAVY if m in sys.modules))
"""


def test_the_sqlite_service_does_not_import_psycopg() -> None:
    found = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=60
    )
    drivers, clients = found.stdout.splitlines()
    assert drivers.split() == ["False", "False"], found.stdout + found.stderr
    assert clients == "[]", found.stdout


def test_each_store_says_which_errors_mean_its_database_cannot_answer() -> None:
    import sqlite3

    import psycopg
    import psycopg_pool

    from webhook_operator.store import postgres, sqlite  # noqa: F401  (they register them)
    from webhook_operator.store.base import store_unavailable

    assert store_unavailable(sqlite3.OperationalError("database is locked"))
    assert store_unavailable(psycopg.OperationalError("connection refused"))
    assert store_unavailable(psycopg_pool.PoolTimeout("no connection"))
    assert not store_unavailable(sqlite3.IntegrityError("constraint"))
    assert not store_unavailable(ValueError("bad"))


OPERATOR = """
import sys
from webhook_operator.cli import hide_generated_clients
hide_generated_clients()
import webhook_operator.controller.runner
HEAVY = ("kubernetes", "kubernetes_asyncio", "httpx", "rich")
print(sorted(m for m in HEAVY if sys.modules.get(m)))
"""


def test_the_operator_loads_no_generated_client() -> None:
    # kopf would import both (about 46 MB) only to recognise their objects.
    found = subprocess.run(
        [sys.executable, "-c", OPERATOR], capture_output=True, text=True, check=True, timeout=60
    )
    assert found.stdout.strip() == "[]", found.stdout + found.stderr
