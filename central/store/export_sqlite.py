"""SQLite side of the regulatory export (issue 04): the signed batch headers ingest keeps (inside its
transaction, on the writer thread); the reads are :mod:`central.store.export_shared`'s."""

from __future__ import annotations

import sqlite3

from central.repos.ingest import SignedHeader

from .export_shared import INSERT_SIGNED, SharedExport, signed_header_args
from .sqlite_db import SqliteDatabase


def insert_signed_header(con: sqlite3.Connection, hall: str, last_seq: int, signed: SignedHeader,
                         stored_at: int) -> None:
    """Keep the signed header of a batch that just stored events (:data:`INSERT_SIGNED`)."""
    con.execute(INSERT_SIGNED, signed_header_args(hall, last_seq, signed, stored_at))


class SqliteExport(SharedExport):
    """:class:`~central.repos.export.ExportRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)
