"""The regulatory export's reads (issue 04), written once for both backends
(:class:`central.repos.export.ExportRepository` over a :class:`~central.store.plans.PlanDatabase`).

Reading is paged by ``(hall, seq)`` on the primary key, one short read per page, so an export of any
period holds one page in memory and never a long read transaction (WAL readers do not block ingest).
Events are append-only and a hall's stored events are always its contiguous chain prefix, so pages
read at different moments still form one consistent range: nothing at or below a range's end changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from central.repos.export import ExportRange, ExportRow
from central.repos.ingest import SignedHeader

from .plans import Plan, PlanDatabase, query
from .sqlhelpers import hall_scope, where_clause

_MAX_PAGE: Final = 10_000

INSERT_SIGNED: Final = (
    "INSERT INTO batches (hall, first_seq, last_seq, header, sig, public_key_pem, stored_at)"
    " SELECT CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT),"
    " public_key_pem, CAST(? AS BIGINT) FROM halls WHERE id = ?"
    " ON CONFLICT (hall, last_seq) DO NOTHING"
)
"""Keep the signed header of a batch that just stored events (inside the ingest transaction), with the
hall key registered now, which is the one the batch verified with (a key replaced between verification
and commit would make the export say so, not lie). The casts type the selected parameters for PostgreSQL."""


def signed_header_args(hall: str, last_seq: int, signed: SignedHeader, stored_at: int) -> tuple[Any, ...]:
    """The parameters of :data:`INSERT_SIGNED`; refuses a header that is not the batch being stored."""
    if signed.hall != hall or signed.last_seq != last_seq:
        raise ValueError(f"signed header {signed.hall}:{signed.first_seq}..{signed.last_seq} is not the batch "
                         f"being stored ({hall}, last seq {last_seq})")
    return hall, signed.first_seq, signed.last_seq, signed.header, signed.sig, stored_at, hall


def _ranges(time_from: int, time_to: int, hall: str | None, where: list[str],
            params: list[Any]) -> Plan[list[ExportRange]]:
    ids = [r[0] for r in (yield query(f"SELECT id FROM halls{where_clause(where)} ORDER BY id", *params))]
    # one pass over the period's rows (the time index bounds it), whatever the number of halls
    ends = {r[0]: (r[1], r[2]) for r in (yield query(
        "SELECT hall, MIN(seq), MAX(seq) FROM events WHERE agent_time >= ? AND agent_time < ?"
        + (" AND hall = ?" if hall is not None else "") + " GROUP BY hall",
        time_from, time_to, *([hall] if hall is not None else [])))}
    return [ExportRange(h, *ends.get(h, (None, None))) for h in ids]


class SharedExport:
    """:class:`~central.repos.export.ExportRepository` on either database."""

    def __init__(self, db: PlanDatabase) -> None:
        self._db = db

    async def export_ranges(self, *, time_from: int, time_to: int, hall: str | None = None,
                            halls: Sequence[str] | None = None) -> list[ExportRange]:
        where: list[str] = []
        params: list[Any] = []
        if not hall_scope(where, params, hall, halls, column="id"):
            return []
        return await self._db.read(_ranges(time_from, time_to, hall, where, params))

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
        rows = await self._db.fetch("SELECT hall, first_seq, last_seq, header, sig, public_key_pem FROM batches"
                                    " WHERE hall = ? AND last_seq >= ? ORDER BY last_seq LIMIT 1", hall, seq)
        return SignedHeader(*rows[0]) if rows else None
