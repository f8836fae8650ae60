"""The PostgreSQL backend: one :class:`~central.store.pg_db.PgDatabase` (a pool, its migrations) and a
repository per feature over it."""

from __future__ import annotations

from central.repos import Repositories

from .audit_pg import PgAudit
from .catalog_pg import PgCatalog
from .commands_pg import PgCommands
from .devices_pg import PgDevices
from .export_pg import PgExport
from .halls_pg import PgHalls
from .ingest_pg import PgIngest
from .leases_pg import PgLeases
from .monitor_pg import PgMonitor
from .pg_db import PgDatabase
from .reports_shared import SharedReports


def pg_repositories(db: PgDatabase) -> Repositories:
    """Every repository over one open PostgreSQL database."""
    return Repositories(database=db, halls=PgHalls(db), ingest=PgIngest(db), reports=SharedReports(db),
                        devices=PgDevices(db), catalog=PgCatalog(db), commands=PgCommands(db), monitor=PgMonitor(db),
                        audit=PgAudit(db), export=PgExport(db), leases=PgLeases(db))


async def open_postgres(dsn: str) -> Repositories:
    """Connect to the PostgreSQL database ``dsn`` names and bring its schema up to date."""
    return pg_repositories(await PgDatabase.open(dsn))
