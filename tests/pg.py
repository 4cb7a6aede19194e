"""A throwaway PostgreSQL server for the test session, so the PostgreSQL store is tested
against the real thing on any machine with the server binaries (`.ci/install-postgres`
installs them).

With WEBHOOK_OPERATOR_TEST_POSTGRES_DSN set, that server is used instead (its role needs
CREATEDB: tests make their own databases). Otherwise `initdb` makes a cluster in a temp
dir and `pg_ctl` starts it on a free 127.0.0.1 port, without fsync, until `stop()`.
PostgreSQL refuses to run as root; as root, the server runs as the `postgres` user and
owns its directory. No binaries is a failure, not a skip: CI must run these tests."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from webhook_operator.devcluster.cluster import free_port

DSN_ENV = "WEBHOOK_OPERATOR_TEST_POSTGRES_DSN"
SERVER_USER = "postgres"  # the OS user the server runs as when we are root
START_TIMEOUT = 60


class PostgresUnavailable(RuntimeError):
    """Neither a DSN nor PostgreSQL server binaries."""


def find_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: PATH first, then Debian's versioned directories
    (newest version first)."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for bin_dir in candidates:
        if (bin_dir / "initdb").is_file() and (bin_dir / "pg_ctl").is_file():
            return bin_dir
    return None


@dataclass
class Server:
    """A PostgreSQL server the tests may use: its DSN, and the local process if we own it."""

    dsn: str
    local: LocalPostgres | None = None

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()


class LocalPostgres:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        # Under /tmp rather than pytest's basetemp: as root that is 0700 and the
        # postgres user could not reach a directory inside it.
        self.workdir = Path(tempfile.mkdtemp(prefix="webhook-operator-pg-"))
        self.datadir = self.workdir / "data"
        self.logfile = self.workdir / "server.log"
        self.port = free_port()

    @property
    def dsn(self) -> str:
        return make_conninfo(host="127.0.0.1", port=self.port, user=SERVER_USER, dbname="postgres")

    def start(self) -> None:
        if self.as_root:
            account = pwd.getpwnam(SERVER_USER)
            os.chown(self.workdir, account.pw_uid, account.pw_gid)
        self._run(
            "initdb",
            f"--pgdata={self.datadir}",
            f"--username={SERVER_USER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        self.start_server()

    def start_server(self) -> None:
        """pg_ctl start on the initialised data directory (again, after a stop)."""
        options = " ".join(
            [
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-k {self.workdir}",
            ]
        )
        self._run(
            "pg_ctl",
            "start",
            f"--pgdata={self.datadir}",
            f"--log={self.logfile}",
            f"--options={options}",
            "--wait",
            f"--timeout={START_TIMEOUT}",
        )

    def stop(self) -> None:
        try:
            if (self.datadir / "postmaster.pid").exists():
                self._run(
                    "pg_ctl", "stop", f"--pgdata={self.datadir}", "--mode=immediate", "--wait"
                )
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 30,
            cwd=self.workdir,
        )
        if done.returncode != 0:
            log = self.logfile.read_text() if self.logfile.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}"
            )


def start_server() -> Server:
    """The session's server: the one the environment names, else a fresh local one."""
    external = os.environ.get(DSN_ENV)
    if external:
        return Server(external)
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) were found neither on PATH nor in "
            "/usr/lib/postgresql/*/bin. Install them (.ci/install-postgres does, on Debian) "
            f"or set {DSN_ENV} to a server whose role may CREATE DATABASE."
        )
    local = LocalPostgres(bin_dir)
    try:
        local.start()
    except BaseException:
        local.stop()
        raise
    return Server(local.dsn, local)


def create_database(server_dsn: str, prefix: str) -> str:
    """A new, empty database on the server; returns its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(server_dsn, dbname=name)


def drop_database(server_dsn: str, database_dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(database_dsn)["dbname"]
    assert isinstance(name, str)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
