"""The PostgreSQL database of central (issue 14): one asyncpg pool, its transactions and its migrations.

This is the only module that imports the driver; the PostgreSQL repositories see :class:`PgConn`.

Why asyncpg (``asyncpg==0.32.0``): it is asyncio throughout (no threads, unlike sqlite3 behind the
SQLite backend's writer), speaks PostgreSQL's binary protocol with prepared statements cached per
connection, and has ``copy_records_to_table`` and pipelined ``executemany`` for ingest's rows.

Placeholders: the repositories write ``?`` as the SQLite backend does, so the two share their SQL
where the dialects agree; :func:`numbered` turns them into ``$1, $2 …`` once per statement text.

Numbers: ``SUM`` over BIGINT is NUMERIC in PostgreSQL. The pool decodes NUMERIC as :class:`int` (and
refuses a fractional value), so money stays integer minor units end to end, never a float or a
Decimal.

Concurrency: every unit of work is one transaction on a pooled connection, READ COMMITTED unless it
asks for more. A unit that decides from the stored chain end of a hall locks the hall's row first
(``SELECT … FOR UPDATE``), so two batches of one hall (from one process or several) are applied one
after the other, each seeing what the other committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, Final, TypeVar

import asyncpg
import structlog

from central.repos.errors import DuplicateKey, StoreError

from .pg_schema import MIGRATIONS
from .plans import POSTGRES, Plan
from .sqlhelpers import ZERO_ROLLUP

T = TypeVar("T")

log = structlog.get_logger("central.store.pg_db")

_MIGRATION_LOCK: Final = 0x68616C6C73796E63   # "hallsync": one migrating process at a time per database

CUSTOM_PLANS: Final = "SET LOCAL plan_cache_mode = force_custom_plan"
"""A read snapshot (:meth:`PgDatabase.reading`: the reports, the floor) plans each statement for its
own values. asyncpg prepares and caches every statement, and after five runs PostgreSQL may switch a
cached one to a generic plan, blind to the values: a report's ``day >= $1 AND day <= $2`` is then
guessed at 0.5 % of the rows, so a 90-day GGR by device became an index scan plus an on-disk sort,
128 ms instead of 40 ms from the sixth run on (3M events, bench/reports.py). Only there: forced on
every connection, live ingest's PostgreSQL CPU per event rose from 169 to 205 us (many_halls --halls
20 --live), as its small statements run thousands of times a second and gain nothing from it."""

LISTEN_RETRY_SECONDS: Final = 5.0
"""How long after a failed connect the notification connection is tried again (:meth:`PgDatabase.listen`)."""
LISTEN_CONNECT_TIMEOUT: Final = 5.0
LISTEN_PROBE_SECONDS: Final = 10.0
"""How often the notification connection is asked a ``SELECT 1``: a connection whose server stopped
answering without closing it (a network cut, a frozen host) would otherwise look open for hours (TCP
keepalive is off by default), and the workers would miss every notification until then."""
LISTEN_PROBE_TIMEOUT: Final = 3.0
LISTEN_APPLICATION_NAME: Final = "hallsync-notifications"
"""The notification connection's ``application_name``, as ``pg_stat_activity`` shows it to a DBA."""


_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?")


@functools.lru_cache(maxsize=4096)
def numbered(sql: str) -> str:
    """``sql`` with each ``?`` outside string literals as PostgreSQL's ``$n`` (1-based, in order), and
    the zero-rollup condition as the generated column its partial index names (migration 5), the
    one spelling PostgreSQL's planner matches to that index."""
    sql = sql.replace(ZERO_ROLLUP, "zero")
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(replace, sql)


def _int_numeric(text: str) -> int:
    """NUMERIC (what SUM over BIGINT gives) as an exact int; a fraction is a bug, never rounded."""
    try:
        return int(text)
    except ValueError:
        raise StoreError(f"a non-integer NUMERIC {text!r} reached central (amounts are integer minor units)") \
            from None


async def _setup_connection(con: asyncpg.Connection) -> None:
    await con.set_type_codec("numeric", encoder=str, decoder=_int_numeric, schema="pg_catalog", format="text")


class PgConn:
    """A pooled connection as the repositories use it: ``?`` placeholders, records by position."""

    __slots__ = ("_con",)

    def __init__(self, con: asyncpg.Connection) -> None:
        self._con = con

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return list(await self._con.fetch(numbered(sql), *args))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._con.fetchrow(numbered(sql), *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._con.fetchval(numbered(sql), *args)

    async def execute(self, sql: str, *args: Any) -> str:
        result: str = await self._con.execute(numbered(sql), *args)
        return result

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._con.executemany(numbered(sql), rows)

    async def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """COPY rows into ``table`` (binary protocol): the cheapest insert of many rows, no conflict clause."""
        await self._con.copy_records_to_table(table, records=rows, columns=list(columns))


async def run_pg(con: PgConn, plan: Plan[T]) -> T:
    """Run a plan (:mod:`central.store.plans`) on ``con``; an empty ``many`` step sends nothing."""
    try:
        step = next(plan)
        while True:
            if step.many:
                if step.args:
                    await con.executemany(step.sql, step.args)
                step = plan.send([])
            else:
                step = plan.send(await con.fetch(step.sql, *step.args))
    except StopIteration as done:
        result: T = done.value
        return result


@contextlib.contextmanager
def _neutral_errors() -> Iterator[None]:
    """The driver's unique violation as the backend-neutral :class:`DuplicateKey`."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise DuplicateKey(exc.table_name or "table") from exc


async def _migrate(con: asyncpg.Connection) -> None:
    """Apply the missing :data:`MIGRATIONS` in order, all in one transaction, one process at a time."""
    async with con.transaction():
        await con.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,"
                          " name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
        have = {row[0] for row in await con.fetch("SELECT version FROM schema_migrations")}
        known = {version for version, _, _ in MIGRATIONS}
        if have - known:
            raise StoreError(f"database schema has migration(s) {sorted(have - known)} this build does not know "
                             f"(newest known: {max(known)}); run a newer hall-central")
        for version, name, sql in MIGRATIONS:
            if version in have:
                continue
            await con.execute(sql)
            await con.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                              version, name, time.time_ns() // 1000)


class PgDatabase:
    """One PostgreSQL database: a connection pool shared by the repositories of :mod:`central.store`.
    Create it with :meth:`open` (which brings the schema up to date)."""

    dialect = POSTGRES

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self.dsn = dsn
        self._channels: dict[str, Callable[[str], None]] = {}
        self._listening: asyncpg.Connection | None = None
        self._listened: set[str] = set()
        self._listen_lock = asyncio.Lock()
        self._listen_retry_at = 0.0
        self._sending: set[asyncio.Task[None]] = set()
        self._keeper: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 8) -> PgDatabase:
        try:
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_setup_connection)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {_redacted(dsn)}: {exc}") from exc
        db = cls(pool, dsn)
        try:
            async with pool.acquire() as con:
                await _migrate(con)
        except BaseException:
            await pool.close()
            raise
        return db

    @contextlib.asynccontextmanager
    async def transaction(self, isolation: str = "read_committed") -> AsyncIterator[PgConn]:
        """One transaction on a pooled connection: committed when the block ends, rolled back if it raises."""
        with _neutral_errors():
            async with self._pool.acquire() as con, con.transaction(isolation=isolation):
                yield PgConn(con)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[PgConn]:
        """A pooled connection for reads that need one consistent snapshot (REPEATABLE READ, read-only)."""
        async with self._pool.acquire() as con, con.transaction(isolation="repeatable_read", readonly=True):
            await con.execute(CUSTOM_PLANS)
            yield PgConn(con)

    async def read(self, plan: Plan[T]) -> T:
        """A plan's reads (:mod:`central.store.plans`) in one snapshot (:meth:`reading`)."""
        async with self.reading() as con:
            return await run_pg(con, plan)

    async def write(self, plan: Plan[T]) -> T:
        """A plan in one transaction (:meth:`transaction`); its reads lock by the plan's dialect."""
        async with self.transaction() as con:
            return await run_pg(con, plan)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """One read statement on a pooled connection (its own snapshot)."""
        async with self._pool.acquire() as con:
            return list(await con.fetch(numbered(sql), *args))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        async with self._pool.acquire() as con:
            return await con.fetchrow(numbered(sql), *args)

    async def migrations(self) -> list[tuple[int, str]]:
        """The migrations this database has, in order (version, name)."""
        rows = await self.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        return [(row[0], row[1]) for row in rows]

    async def listen(self, channel: str, callback: Callable[[str], None]) -> bool:
        """Deliver every NOTIFY on ``channel`` to ``callback(payload)``, on the event loop, through one
        connection of its own (a pooled one would drop the subscription when returned). True while
        listening; False when that connection cannot be had now (retried every
        :data:`LISTEN_RETRY_SECONDS` by the next call): callers then fall back to looking themselves.
        Notifications sent while the connection was down are lost, which is why nothing may depend on
        one arriving."""
        self._channels[channel] = callback
        con = self._listening
        if con is not None and not con.is_closed() and channel in self._listened:
            return True
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep_listening(), name="pg-listen-keeper")
        return await self._subscribe()

    async def _keep_listening(self) -> None:
        """Every :data:`LISTEN_PROBE_SECONDS`: probe the notification connection, replace one that does
        not answer, and connect again after a loss (so a worker that never waits still hears asks)."""
        while True:
            await asyncio.sleep(LISTEN_PROBE_SECONDS)
            try:
                if await self._probe():
                    continue
                await self._subscribe()
            except Exception:   # a bug here must not end the keeping: the next round tries again
                log.exception("notification connection keeper failed")

    async def _probe(self) -> bool:
        """True if the notification connection answers; one that does not is closed (False)."""
        async with self._listen_lock:
            con = self._listening
            if con is None or con.is_closed():
                return False
            try:
                await asyncio.wait_for(con.fetchval("SELECT 1"), LISTEN_PROBE_TIMEOUT)
                return True
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("notification connection not answering: replacing it",
                            error=str(exc) or type(exc).__name__, timeout_seconds=LISTEN_PROBE_TIMEOUT)
                con.terminate()
                if con is self._listening:
                    self._listening, self._listened = None, set()
                return False

    async def _subscribe(self) -> bool:
        """Connect the notification connection if it is not, and listen on every channel asked for."""
        async with self._listen_lock:
            con = self._listening
            if con is None or con.is_closed():
                if time.monotonic() < self._listen_retry_at:
                    return False
                try:
                    fresh: asyncpg.Connection = await asyncio.wait_for(
                        asyncpg.connect(self.dsn, server_settings={"application_name": LISTEN_APPLICATION_NAME}),
                        LISTEN_CONNECT_TIMEOUT)
                except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                    self._listen_retry_at = time.monotonic() + LISTEN_RETRY_SECONDS
                    log.warning("notifications unavailable: polling instead", error=str(exc) or type(exc).__name__,
                                retry_seconds=LISTEN_RETRY_SECONDS)
                    return False
                fresh.add_termination_listener(self._listener_lost)
                self._listening, self._listened, con = fresh, set(), fresh
            try:
                for name in [c for c in self._channels if c not in self._listened]:
                    await con.add_listener(name, self._dispatch)
                    self._listened.add(name)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("notifications unavailable: polling instead", error=str(exc))
                return False
            return True

    def _dispatch(self, con: Any, pid: int, channel: str, payload: str) -> None:
        callback = self._channels.get(channel)
        if callback is None:
            return
        try:
            callback(payload)
        except Exception:   # a handler's bug must not stop the other channels' notifications
            log.exception("notification handler failed", channel=channel)

    def _listener_lost(self, con: Any) -> None:
        if con is self._listening:
            self._listening, self._listened = None, set()
            log.warning("notification connection lost: polling until it is back")

    async def notify(self, channel: str, payload: str) -> None:
        """NOTIFY ``channel`` with ``payload`` (its own short transaction)."""
        async with self._pool.acquire() as con:
            await con.execute("SELECT pg_notify($1, $2)", channel, payload)

    def notify_soon(self, channel: str, payload: str) -> None:
        """:meth:`notify` from a notification handler (a plain callback): a task of this database's,
        cancelled by :meth:`close`; a failure is logged, as a notification may be lost anyway."""
        async def send() -> None:
            try:
                async with asyncio.timeout(LISTEN_CONNECT_TIMEOUT):
                    await self.notify(channel, payload)
            except Exception as exc:
                log.warning("notification not sent", channel=channel, error=str(exc) or type(exc).__name__)
        task = asyncio.create_task(send(), name=f"pg-notify-{channel}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        keeper, self._keeper = self._keeper, None
        for task in [*self._sending, *([keeper] if keeper is not None else [])]:
            task.cancel()
        await asyncio.gather(*self._sending, *([keeper] if keeper is not None else []), return_exceptions=True)
        con, self._listening = self._listening, None
        if con is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await con.close(timeout=2.0)
        await self._pool.close()


def _redacted(dsn: str) -> str:
    """The DSN without a password (for error messages and logs)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)
