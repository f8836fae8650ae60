"""The SQLite backend: one :class:`~central.store.sqlite_db.SqliteDatabase` (the file, its writer and
reader threads, the group commit of ingest) and a repository per feature over it."""

from __future__ import annotations

from pathlib import Path

from central.repos import Repositories

from .audit_sqlite import SqliteAudit
from .catalog_sqlite import SqliteCatalog
from .commands_sqlite import SqliteCommands
from .devices_sqlite import SqliteDevices
from .export_sqlite import SqliteExport
from .halls_sqlite import SqliteHalls
from .ingest_sqlite import SqliteIngest
from .leases_sqlite import SqliteLeases
from .monitor_sqlite import SqliteMonitor
from .reports_shared import SharedReports
from .sqlite_db import SqliteDatabase


def sqlite_repositories(db: SqliteDatabase) -> Repositories:
    """Every repository over one open SQLite database."""
    return Repositories(database=db, halls=SqliteHalls(db), ingest=SqliteIngest(db), reports=SharedReports(db),
                        devices=SqliteDevices(db), catalog=SqliteCatalog(db), commands=SqliteCommands(db),
                        monitor=SqliteMonitor(db), audit=SqliteAudit(db), export=SqliteExport(db),
                        leases=SqliteLeases(db))


async def open_sqlite(path: str | Path) -> Repositories:
    """Open (creating if needed) the SQLite database at ``path``, its schema brought up to date."""
    return sqlite_repositories(await SqliteDatabase.open(path))
