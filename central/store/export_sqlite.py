"""SQLite side of the regulatory export (issue 04): signed batch headers in, period pages out.

Reading is paged by ``(hall, seq)`` on the primary key, one short read per page, so an export of any
period holds one page in memory and never a long read transaction (WAL readers do not block ingest).
Events are append-only and a hall's stored events are always its contiguous chain prefix, so pages
read at different moments still form one consistent range: nothing at or below a range's end changes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

from central.repos.export import ExportRange, ExportRow
from central.repos.ingest import SignedHeader

from .sqlite_db import SqliteDatabase

_MAX_PAGE = 10_000

_INSERT_SIGNED = (
    "INSERT INTO batches (hall, first_seq, last_seq, header, sig, public_key_pem, stored_at)"
    " SELECT ?, ?, ?, ?, ?, public_key_pem, ? FROM halls WHERE id = ?"
    " ON CONFLICT (hall, last_seq) DO NOTHING"
)


def insert_signed_header(con: sqlite3.Connection, hall: str, last_seq: int, signed: SignedHeader,
                         stored_at: int) -> None:
    """Keep the signed header of a batch that just stored events (inside the ingest transaction).

    The hall key stored with it is the one registered now, which is the one the batch verified with
    (a key replaced between verification and commit would make the export say so, not lie).
    """
    if signed.hall != hall or signed.last_seq != last_seq:
        raise ValueError(f"signed header {signed.hall}:{signed.first_seq}..{signed.last_seq} is not the batch "
                         f"being stored ({hall}, last seq {last_seq})")
    con.execute(_INSERT_SIGNED, (hall, signed.first_seq, signed.last_seq, signed.header, signed.sig, stored_at,
                                 hall))


class SqliteExport:
    """:class:`~central.repos.export.ExportRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
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
            where.append(f"id IN ({', '.join('?' for _ in halls)})")
            params.extend(halls)
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""

        def body(con: sqlite3.Connection) -> list[ExportRange]:
            ids = [r[0] for r in con.execute(f"SELECT id FROM halls{where_sql} ORDER BY id", params)]
            # one pass over the period's rows (the time index bounds it), whatever the number of halls
            ends = {r[0]: (r[1], r[2]) for r in con.execute(
                "SELECT hall, MIN(seq), MAX(seq) FROM events WHERE agent_time >= ? AND agent_time < ?"
                + (" AND hall = ?" if hall is not None else "") + " GROUP BY hall",
                (time_from, time_to, *([hall] if hall is not None else [])))}
            return [ExportRange(h, *ends.get(h, (None, None))) for h in ids]

        return await self._db.reader.run(body)

    async def export_rows(self, hall: str, *, after_seq: int, through_seq: int, limit: int) -> list[ExportRow]:
        params = (hall, after_seq, through_seq, max(1, min(limit, _MAX_PAGE)))

        def body(con: sqlite3.Connection) -> list[ExportRow]:
            return [ExportRow(*r) for r in con.execute(
                "SELECT hall, seq, id, device, type, device_time, agent_time, central_time, prev_hash, hash, data"
                " FROM events WHERE hall = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?", params)]

        return await self._db.reader.run(body)

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
        def body(con: sqlite3.Connection) -> SignedHeader | None:
            row = con.execute("SELECT hall, first_seq, last_seq, header, sig, public_key_pem FROM batches"
                              " WHERE hall = ? AND last_seq >= ? ORDER BY last_seq LIMIT 1", (hall, seq)).fetchone()
            return None if row is None else SignedHeader(*row)

        return await self._db.reader.run(body)
