"""Fixtures for central: a real store on each backend, central's key, an ingestor with a test clock.

``store`` runs every test that takes it twice: on a SQLite file in tmp_path, and on PostgreSQL in
the run's private cluster (``postgres`` fixture, tests/pgcluster.py). There each test starts from an
empty database with central's schema: one database migrated once per run, emptied before each test
(every row deleted and the identity counters restarted, about 10 ms, where ``CREATE DATABASE …
TEMPLATE`` cost about 0.4 s a test with the cluster's fsync). Tests that need a database of their own
(two processes, migrations, the CLI) take :func:`fresh_pg_database`, a copy of the migrated template.
Tests whose code under test opens the database itself (``hall-central`` subprocesses, an in-process
``serve``) take :func:`db_url` instead: the ``--db`` argument of an empty database on the test's
backend — a SQLite file in tmp_path, or the same shared PostgreSQL database, emptied. A test pinned to
one backend says so with ``@pytest.mark.parametrize("backend", [...])`` and why.
A test on PostgreSQL that reaches a repository the backend does not have is reported as skipped with
the repository's name (see :func:`pytest_runtest_makereport`), never as passed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from central.ingest import Ingestor
from central.repos import Repositories
from central.repos.errors import BackendUnavailable
from central.store import open_sqlite, open_store
from protocols.sync import generate_private_key
from protocols.sync.keys import Ed25519PrivateKey

from .builders import T0, FakeHall


class StepClock:
    """Deterministic microsecond clock: each call is one millisecond later."""

    def __init__(self, start: int = T0 + 10**12) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1000
        return self.now


@pytest.fixture
def central_key() -> Ed25519PrivateKey:
    return generate_private_key()


BACKENDS = ("sqlite", "postgresql")

_TEMPLATE = "hallsync_template"
_numbers = itertools.count(1)


def off_loop(run: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to the end from sync code, also when a test's event loop is running (a thread
    with a loop of its own)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def pg_template(postgres: Any) -> str:
    """The URL of the run's cluster, once it holds a database with central's schema to copy from."""
    postgres.psql(f"CREATE DATABASE {_TEMPLATE}")
    url = postgres.url.rsplit("/", 1)[0]

    async def migrate() -> None:
        await (await open_store(f"{url}/{_TEMPLATE}")).close()

    off_loop(migrate)   # first requested from inside a test's event loop
    return url


@contextlib.asynccontextmanager
async def fresh_pg_database(base: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """A new database copied from the migrated template (or, ``migrated=False``, an empty one without
    central's schema); dropped when the block ends."""
    import asyncpg

    name = f"t{next(_numbers)}"
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {_TEMPLATE}" if migrated else f"CREATE DATABASE {name}")
        try:
            yield f"{base}/{name}"
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


_SHARED = "hallsync_tests"


@pytest.fixture(scope="session")
def pg_shared(pg_template: str, postgres: Any) -> str:
    """The URL of the database the ``store`` tests share (emptied before each, see :func:`empty_pg`)."""
    postgres.psql(f"CREATE DATABASE {_SHARED} TEMPLATE {_TEMPLATE}")
    return f"{pg_template}/{_SHARED}"


async def empty_pg(url: str) -> None:
    """Delete every row of central's tables and restart their identity counters (one transaction)."""
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        tables = [r[0] for r in await con.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                                                " AND tablename != 'schema_migrations' ORDER BY tablename")]
        sequences = [r[0] for r in await con.fetch("SELECT sequencename FROM pg_sequences"
                                                   " WHERE schemaname = 'public'")]
        async with con.transaction():
            for table in tables:
                await con.execute(f"DELETE FROM {table}")
            for sequence in sequences:
                await con.execute(f"ALTER SEQUENCE {sequence} RESTART")
    finally:
        await con.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store's backend of this run of the test."""
    return str(request.param)


@pytest.fixture
async def store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Repositories]:
    if backend == "sqlite":
        s = await open_sqlite(tmp_path / "central.db")
    else:
        url = request.getfixturevalue("pg_shared")
        await empty_pg(url)
        s = await open_store(url)
    yield s
    await s.close()


def empty_db_url(backend: str, directory: Path, request: pytest.FixtureRequest) -> str:
    """``--db`` of an empty database on ``backend``: a new SQLite file in ``directory``, or the shared
    PostgreSQL one emptied."""
    if backend == "sqlite":
        return str(directory / "central.db")
    url: str = request.getfixturevalue("pg_shared")
    off_loop(lambda: empty_pg(url))
    return url


SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])
"""Pins a ``db_url`` test to SQLite; say beside it why (what it tests is SQLite's own, or CI time with
another test of the same path run on PostgreSQL)."""

POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgresql"])
"""Pins a test to PostgreSQL: what it tests exists only there (say beside it what)."""


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The ``--db`` argument of an empty database on this run's backend, for the processes a test starts."""
    return empty_db_url(backend, tmp_path, request)


def query(db: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a read-only or one-statement SQL against a ``--db`` (a file or a URL), as tuples: what an
    operator's ``sqlite3``/``psql`` shows. Write the SQL both backends accept (no placeholders)."""
    if not db.startswith("postgresql://"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(db)) as con, con:
            return con.execute(sql).fetchall()
    rows: list[tuple[Any, ...]] = []

    async def run() -> None:
        import asyncpg

        con = await asyncpg.connect(db)
        try:
            rows.extend(tuple(r) for r in await con.fetch(sql))
        finally:
            await con.close()

    off_loop(run)
    return rows


def db_arg(store: Repositories) -> str:
    """The ``--db`` argument naming the store's database (its file, or its URL)."""
    database: Any = store.database
    return str(getattr(database, "path", None) or database.dsn)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A PostgreSQL run that reaches a repository not on PostgreSQL yet is a skip naming it."""
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    if (report.when == "call" and report.failed and callspec is not None
            and callspec.params.get("backend") == "postgresql" and call.excinfo is not None
            and call.excinfo.errisinstance(BackendUnavailable)):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {call.excinfo.value}")


@pytest.fixture
def ingestor(store: Repositories, central_key: Ed25519PrivateKey) -> Ingestor:
    return Ingestor(store, central_key, StepClock())


async def register(store: Repositories, *halls: FakeHall) -> None:
    for hall in halls:
        assert await store.halls.add_hall(hall.hall, hall.public_pem, now=T0) == "added"
