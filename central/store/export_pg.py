"""The regulatory export on PostgreSQL: the signed batch headers ingest keeps (inside its transaction);
the reads are :mod:`central.store.export_shared`'s (``export_ranges`` in one snapshot)."""

from __future__ import annotations

from central.repos.ingest import SignedHeader

from .export_shared import INSERT_SIGNED, SharedExport, signed_header_args
from .pg_db import PgConn, PgDatabase


async def insert_signed_header(con: PgConn, hall: str, last_seq: int, signed: SignedHeader, stored_at: int) -> None:
    """Keep the signed header of a batch that just stored events (:data:`INSERT_SIGNED`)."""
    await con.execute(INSERT_SIGNED, *signed_header_args(hall, last_seq, signed, stored_at))


class PgExport(SharedExport):
    """:class:`~central.repos.export.ExportRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        super().__init__(db)
