"""Units of store work written once for both backends, as plans: generators that yield the statements
to run (:class:`Step`, ``?`` placeholders) and get each one's rows back, and return the unit's result.

A plan holds the SQL and the row→record mapping; it never touches a connection. The backends only run
it: SQLite on its reader or writer thread, all steps in one call (``run_sqlite``, in
:mod:`central.store.sqlhelpers`), PostgreSQL on one connection of the pool (``run_pg``, in
:mod:`central.store.pg_db`). Each database has ``read(plan)`` (one consistent snapshot) and
``write(plan)`` (one transaction); what differs between the dialects is in :class:`Dialect`.

A single-statement read needs no plan: both databases have ``fetch(sql, *args)``
(:mod:`central.store.shared_reads`).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a plan. Its rows come back (none for a write without RETURNING); ``many``:
    ``args`` is a sequence of parameter rows, the statement runs once per row and nothing comes back."""

    sql: str
    args: Sequence[Any] = ()
    many: bool = False


Plan = Generator[Step, list[Any], T]


def query(sql: str, *args: Any) -> Step:
    return Step(sql, args)


def many(sql: str, rows: Sequence[Sequence[Any]]) -> Step:
    return Step(sql, rows, many=True)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What a plan's SQL spells differently per backend."""

    for_update: str
    """Appended to a read inside a write whose rows the write then changes: PostgreSQL locks them.
    SQLite needs nothing: ``BEGIN IMMEDIATE`` holds the database's write lock already."""
    for_share: str
    """Appended to a read of rows a write depends on but does not change (a foreign row)."""
    xact_lock: str | None
    """A statement taking a transaction-level lock on one number (PostgreSQL's advisory lock), so two
    processes never interleave one kind of write; None where writes are serialised anyway (SQLite)."""


SQLITE: Final = Dialect(for_update="", for_share="", xact_lock=None)
POSTGRES: Final = Dialect(for_update=" FOR UPDATE", for_share=" FOR SHARE",
                          xact_lock="SELECT pg_advisory_xact_lock(CAST(? AS BIGINT))")


class PlanDatabase(Protocol):
    """What the shared repositories need of a database (:class:`~central.store.sqlite_db.SqliteDatabase`
    and :class:`~central.store.pg_db.PgDatabase` both are one)."""

    dialect: Dialect

    async def fetch(self, sql: str, *args: Any) -> list[Any]: ...

    async def read(self, plan: Plan[T]) -> T: ...

    async def write(self, plan: Plan[T]) -> T: ...
