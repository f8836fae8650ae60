"""Group commit: the store writer commits the units of work of many callers (many halls) in one transaction.

Why: a commit with ``synchronous=FULL`` costs an fsync (about 3.7 ms on the reference machine) whatever
it holds. One transaction per batch capped live ingest at a few hundred batches per second however
small the batches were (100 halls sending ~5 events every 50 ms offered 2,000 batches/s). Committing
every batch that is waiting together makes the fsync a cost per commit, not per batch.

How the gathering adapts (no timer, no added wait when idle): when the writer is free, the first unit
of work goes at once, alone. Units that arrive while a commit is in progress wait for it and then go
together in the next one. So the linger is exactly the commit in progress: none when the writer is
idle, a few milliseconds under load, and the groups grow with the load. A group holds at least one
unit and stops taking more once it holds ``max_events`` events, so a live batch never waits behind
more than about that much work plus one commit.

Isolation inside a group: each unit runs inside its own ``SAVEPOINT``. A unit that raises is rolled
back to its savepoint alone and its caller gets the exception; the others commit. Each caller's
future is resolved only after ``COMMIT`` returned, so an ack built from the result is never sent for
work that is not durable. If the transaction as a whole fails (``BEGIN`` finds the database locked by
another process, ``COMMIT`` hits a full disk, or SQLite rolled the whole transaction back on its own
after an I/O error inside a unit), every unit of the group gets the error: none of them is durable.

Order: units run in the order they were submitted, in one transaction on one connection, so two
batches of the same hall in one group are applied in order and the second sees the chain end the
first wrote (it is the same uncommitted transaction).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")

DEFAULT_MAX_EVENTS: Final = 4000
"""Events after which a group takes no more units: a few thousand rows are a few tens of ms of writing,
which bounds what a live batch waits behind while backlogs (batches of up to 5,000) drain."""

Runner = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]
"""Runs a function with the writer's connection on the writer's thread (``_Worker.run``)."""


class GroupFailed(Exception):
    """The group's transaction did not commit; raised to every unit of the group (``__cause__`` says why)."""


@dataclass(slots=True)
class _Unit(Generic[T]):
    work: Callable[[sqlite3.Connection], T]
    events: int
    future: asyncio.Future[T]


@dataclass(slots=True)
class _Outcome:
    """One unit's result inside a group: its value, or the exception that rolled back its savepoint."""

    value: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class GroupStats:
    """Counters for metrics and benchmarks (how well the gathering works under the load it sees)."""

    commits: int = 0
    units: int = 0
    events: int = 0
    largest_group: int = 0
    failed_groups: int = 0
    group_sizes: collections.Counter[int] = field(default_factory=collections.Counter)


class GroupCommitter:
    """The gathering queue in front of the store's single writer; see the module docstring.

    Owned by one store; every call is made on the store's event loop. ``run`` executes a function on
    the writer thread (which owns the connection), so what happens there is plain blocking sqlite3.
    """

    def __init__(self, run: Runner, *, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self._run = run
        self._max_events = max_events
        self._waiting: collections.deque[_Unit[Any]] = collections.deque()
        self._flusher: asyncio.Task[None] | None = None
        self.stats = GroupStats()

    @property
    def waiting(self) -> int:
        """Units submitted and not yet taken into a commit (they wait for the one in progress)."""
        return len(self._waiting)

    async def submit(self, work: Callable[[sqlite3.Connection], T], *, events: int = 1) -> T:
        """Run ``work(con)`` inside the next group's transaction, in its own savepoint; return its result
        once the group has committed, or raise what ``work`` raised (only its savepoint was rolled back)
        or :class:`GroupFailed` (nothing of the group committed). ``events`` weighs the unit for the
        group bound (rows it writes; 1 for small writes)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Unit(work, max(1, events), future))
        if self._flusher is None:  # the writer is free: this unit goes at once
            self._flusher = asyncio.create_task(self._flush(), name="store-group-commit")
        # A caller cancelled while it waits cancels only its own future: a unit not yet taken is skipped,
        # one already in a running group still commits with it (as any unacked write may) unheard.
        return await future

    async def _flush(self) -> None:
        """Commit groups until nothing is waiting, then let the next submit start a new flusher."""
        try:
            while self._waiting:
                group = self._take()
                if not group:
                    continue
                try:
                    outcomes: list[_Outcome] = await self._run(functools.partial(_commit_group, group=group))
                except BaseException as exc:   # the group's transaction failed: no unit of it is durable
                    self.stats.failed_groups += 1
                    failure = GroupFailed(f"group commit of {len(group)} unit(s) failed: {exc!r}")
                    failure.__cause__ = exc
                    for unit in group:
                        if not unit.future.done():
                            unit.future.set_exception(failure)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                self._count(group)
                for unit, outcome in zip(group, outcomes, strict=True):
                    if unit.future.done():
                        continue
                    if outcome.error is not None:
                        unit.future.set_exception(outcome.error)
                    else:
                        unit.future.set_result(outcome.value)
        finally:
            self._flusher = None
            if self._waiting:  # cancelled with units left: they must not wait forever
                for unit in self._waiting:
                    if not unit.future.done():
                        unit.future.set_exception(GroupFailed("the store writer stopped"))
                self._waiting.clear()

    def _take(self) -> list[_Unit[Any]]:
        """The next group: every waiting unit in order, until it holds ``max_events`` events (at least one)."""
        group: list[_Unit[Any]] = []
        events = 0
        while self._waiting and (not group or events < self._max_events):
            unit = self._waiting.popleft()
            if unit.future.done():   # its caller was cancelled before the unit ran: nobody wants it
                continue
            group.append(unit)
            events += unit.events
        return group

    def _count(self, group: list[_Unit[Any]]) -> None:
        stats = self.stats
        stats.commits += 1
        stats.units += len(group)
        stats.events += sum(unit.events for unit in group)
        stats.largest_group = max(stats.largest_group, len(group))
        stats.group_sizes[len(group)] += 1


def _commit_group(con: sqlite3.Connection, *, group: list[_Unit[Any]]) -> list[_Outcome]:
    """On the writer thread: one ``BEGIN IMMEDIATE`` … ``COMMIT`` with a savepoint per unit.

    Raises (and leaves no transaction open) when the transaction as a whole fails; the caller then
    fails every unit. A unit's own exception is caught, its savepoint rolled back, and returned."""
    con.execute("BEGIN IMMEDIATE")
    try:
        outcomes = [_run_unit(con, unit) for unit in group]
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass   # the connection is broken; the next BEGIN says so to the next group
        raise
    return outcomes


def _run_unit(con: sqlite3.Connection, unit: _Unit[Any]) -> _Outcome:
    con.execute("SAVEPOINT unit")
    try:
        value = unit.work(con)
    except Exception as exc:
        if not con.in_transaction:
            # SQLite rolled the whole transaction back by itself (an I/O error, a full disk): the earlier
            # units' writes are gone too, and later ones must not run outside a transaction.
            raise GroupFailed(f"the transaction was rolled back while running a unit: {exc!r}") from exc
        con.execute("ROLLBACK TO unit")
        con.execute("RELEASE unit")
        return _Outcome(error=exc)
    con.execute("RELEASE unit")
    return _Outcome(value=value)


__all__ = ["DEFAULT_MAX_EVENTS", "GroupCommitter", "GroupFailed", "GroupStats"]
