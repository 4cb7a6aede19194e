from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pg
from tests.harness import Cluster, DeliveryProcess, OperatorProcess, Receiver
from tests.replicas import replicas_on_a_new_database


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A PostgreSQL server for the session (see tests/pg.py): its maintenance database's
    DSN. Tests create their own databases on it."""
    try:
        server = pg.start_server()
    except pg.PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A recording HTTP receiver on 127.0.0.1 for one test."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def module_receiver() -> Iterator[Receiver]:
    """A recording HTTP receiver on 127.0.0.1 shared by a module's tests."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def replicas(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    postgres_dsn: str,
    tmp_path: Path,
    operator: OperatorProcess,
) -> Iterator[list[DeliveryProcess]]:
    """The module's `REPLICAS` delivery services on one new PostgreSQL database, named
    after the module."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with replicas_on_a_new_database(
        cluster, postgres_dsn, tmp_path, name, request.module.REPLICAS
    ) as started:
        yield started
