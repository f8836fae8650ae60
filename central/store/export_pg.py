"""The regulatory export's reads on PostgreSQL (:class:`central.repos.export.ExportRepository`): the
same pages by ``(hall, seq)`` as SQLite's (:mod:`central.store.export_sqlite`), one short read each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from central.repos.export import ExportRange, ExportRow
from central.repos.ingest import SignedHeader

from .pg_db import PgDatabase
from .sqlhelpers import where_clause as _where

_MAX_PAGE = 10_000


class PgExport:
    """:class:`~central.repos.export.ExportRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def export_ranges(self, *, time_from: int, time_to: int, hall: str | None = None,
                            halls: Sequence[str] | None = None) -> list[ExportRange]:
        where: list[str] = []
        params: list[Any] = []
        if hall is not None:
            if halls is not None and hall not in halls:
                return []
            where.append("id = ?")
            params.append(hall)
        elif halls is not None:
            if not halls:
                return []
            where.append("id = ANY(?::text[])")
            params.append(list(halls))
        async with self._db.reading() as con:
            ids = [r[0] for r in await con.fetch(f"SELECT id FROM halls{_where(where)} ORDER BY id", *params)]
            ends = {r[0]: (r[1], r[2]) for r in await con.fetch(
                "SELECT hall, MIN(seq), MAX(seq) FROM events WHERE agent_time >= ? AND agent_time < ?"
                + (" AND hall = ?" if hall is not None else "") + " GROUP BY hall",
                time_from, time_to, *([hall] if hall is not None else []))}
        return [ExportRange(h, *ends.get(h, (None, None))) for h in ids]

    async def export_rows(self, hall: str, *, after_seq: int, through_seq: int, limit: int) -> list[ExportRow]:
        rows = await self._db.fetch(
            "SELECT hall, seq, id, device, type, device_time, agent_time, central_time, prev_hash, hash, data"
            " FROM events WHERE hall = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            hall, after_seq, through_seq, max(1, min(limit, _MAX_PAGE)))
        return [ExportRow(*r) for r in rows]

    async def export_pages(self, hall: str, first_seq: int, last_seq: int, *,
                           page_size: int = 1000) -> AsyncIterator[list[ExportRow]]:
        after = first_seq - 1
        while after < last_seq:
            page = await self.export_rows(hall, after_seq=after, through_seq=last_seq, limit=page_size)
            if not page:
                return  # cannot happen for a stored range; the writer's count check then says so
            yield page
            after = page[-1].seq

    async def signed_header_covering(self, hall: str, seq: int) -> SignedHeader | None:
        row = await self._db.fetchrow("SELECT hall, first_seq, last_seq, header, sig, public_key_pem FROM batches"
                                      " WHERE hall = ? AND last_seq >= ? ORDER BY last_seq LIMIT 1", hall, seq)
        return None if row is None else SignedHeader(*row)
