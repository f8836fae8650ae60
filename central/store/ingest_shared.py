"""Ingest's parts written once for both backends: the chain-end decision's reads (a plan run inside
each backend's own transaction: SQLite's group commit, PostgreSQL's row lock by the dialect) and the
event and integration-log reads. Storing a batch's rows stays per backend (multi-row inserts on
SQLite's writer thread, COPY and ``unnest`` upserts on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from central.chainend import decide, stored_hash_needed
from central.repos.errors import StoreError
from central.repos.ingest import IngestResult, LogEntry, SignedHeader
from central.staging import StagedEvents, stage_events
from protocols.sync import Event
from protocols.sync.gamingday import day_rule

from .plans import Dialect, Plan, PlanDatabase, query
from .sqlhelpers import EVENT_READ_COLUMNS, event_record, events_filter, log_filter, where_clause

_MAX_ROWS: Final = 10_000


def chain_end(d: Dialect, staged: StagedEvents) -> Plan[tuple[StagedEvents, IngestResult | StagedEvents]]:
    """The batch under the hall's current day rule and :func:`central.chainend.decide`'s answer for it
    (an :class:`IngestResult` when nothing is stored), from the hall's stored chain end, locked by the
    dialect until the transaction ends."""
    hall = staged.hall
    rows = yield query("SELECT last_seq, last_hash, timezone, gaming_day_start FROM halls WHERE id = ?"
                       + d.for_update, hall)
    if not rows:
        raise StoreError(f"hall {hall!r} is not registered")
    last_seq, last_hash, timezone, day_start = rows[0]
    staged = staged.under(day_rule(timezone, day_start))   # the hall's day, also if it changed since staging
    seq = stored_hash_needed(staged, last_seq)
    found = [] if seq is None else (yield query("SELECT hash FROM events WHERE hall = ? AND seq = ?", hall, seq))
    return staged, decide(staged, last_seq, last_hash, found[0][0] if found else None)


def _by_spans(hall: str, device: str, after_seq: int | None, where: list[str], params: list[Any],
              limit: int) -> Plan[list[dict[str, Any]]]:
    # No per-event device index (schema 5): the device's spans (one per batch, schema 6) say which seq
    # ranges of the hall hold its events, so only those are read.
    out: list[dict[str, Any]] = []
    start = after_seq or 0
    sql = (f"SELECT {EVENT_READ_COLUMNS} FROM events{where_clause([*where, 'seq >= ?', 'seq <= ?'])}"
           " ORDER BY seq LIMIT ?")
    for first, last in (yield query("SELECT first_seq, last_seq FROM device_spans WHERE hall = ? AND device = ?"
                                    " AND last_seq > ? ORDER BY first_seq", hall, device, start)):
        out.extend(event_record(r) for r in (yield query(sql, *params, max(first, start + 1), last, limit - len(out))))
        if len(out) >= limit:
            break
    return out


class IngestReads:
    """What :class:`~central.repos.ingest.IngestRepository` does alike on either database: its reads,
    and staging events for :meth:`ingest_staged` (each backend's own transaction)."""

    def __init__(self, db: PlanDatabase) -> None:
        self._reads = db

    async def ingest_staged(self, staged: StagedEvents, *, signed: SignedHeader | None = None) -> IngestResult:
        raise NotImplementedError

    async def ingest_events(self, hall: str, events: Sequence[Event], *, central_time: int,
                            signed: SignedHeader | None = None) -> IngestResult:
        if not events:
            raise ValueError("ingest_events needs at least one event")
        return await self.ingest_staged(stage_events(hall, events, central_time), signed=signed)

    async def events(self, *, hall: str | None = None, device: str | None = None, type: str | None = None,
                     time_from: int | None = None, time_to: int | None = None, after_seq: int | None = None,
                     limit: int = 100, halls: Sequence[str] | None = None,
                     after_hall: str | None = None) -> list[dict[str, Any]]:
        found = events_filter(hall=hall, device=device, type=type, time_from=time_from, time_to=time_to,
                              after_seq=after_seq, halls=halls, after_hall=after_hall)
        if found is None:
            return []
        where, params = found
        limit = max(1, min(limit, _MAX_ROWS))
        if device is not None and hall is not None:
            return await self._reads.read(_by_spans(hall, device, after_seq, where, params, limit))
        sql = f"SELECT {EVENT_READ_COLUMNS} FROM events{where_clause(where)} ORDER BY hall, seq LIMIT ?"
        return [event_record(r) for r in await self._reads.fetch(sql, *params, limit)]

    async def integration_log(self, *, hall: str | None = None, kind: str | None = None, limit: int = 100,
                              halls: Sequence[str] | None = None, device: str | None = None,
                              time_from: int | None = None, time_to: int | None = None) -> list[LogEntry]:
        found = log_filter(hall=hall, kind=kind, halls=halls, device=device, time_from=time_from, time_to=time_to)
        if found is None:
            return []
        where, params = found
        sql = (f"SELECT time, hall, device, kind, detail FROM integration_log{where_clause(where)}"
               " ORDER BY id DESC LIMIT ?")
        rows = await self._reads.fetch(sql, *params, max(1, min(limit, _MAX_ROWS)))
        return [LogEntry(kind=r[3], detail=r[4], time=r[0], hall=r[1], device=r[2]) for r in rows]
