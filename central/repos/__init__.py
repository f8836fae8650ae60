"""What central persists, as one repository per feature (issue 14): each module here holds a feature's
records and its repository's interface (a :class:`typing.Protocol` of ``async`` methods), both
backend-neutral. The backends implement them over one database object that owns the connections
(SQLite: :class:`central.store.sqlite_db.SqliteDatabase`, its writer and reader threads).

Each method is one unit of work (usually one transaction), so a PostgreSQL backend can implement it
with its own locking and dialect without the callers knowing; nothing here exposes a connection, a
cursor or an SQLite feature. A part of central receives only the repositories it uses;
:class:`Repositories` is the container that the process (and the HTTP app) holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .audit import AuditRepository
from .catalog import CatalogRepository
from .commands import CommandRepository
from .devices import DeviceRepository
from .export import ExportRepository
from .halls import HallRepository
from .ingest import IngestRepository
from .leases import LeaseRepository
from .monitor import MonitorRepository
from .reports import ReportRepository


class Database(Protocol):
    """The connections of one database, shared by its repositories."""

    async def close(self) -> None:
        """Finish pending work and release the connections (and, for SQLite, the threads)."""
        ...


@dataclass(frozen=True, slots=True)
class Repositories:
    """Every repository of one database. One instance per process; safe to use from one event loop."""

    database: Database
    halls: HallRepository
    """Halls (chain state, presence, gaming day, state) and API keys."""
    ingest: IngestRepository
    """Events, signed batch headers and the integration log."""
    reports: ReportRepository
    """Rollups, GGR, hours, and the reconciliation's reads."""
    devices: DeviceRepository
    """Devices and the floor view's reads."""
    catalog: CatalogRepository
    """Providers, games, placements and rules."""
    commands: CommandRepository
    """Commands to the halls' machines."""
    monitor: MonitorRepository
    """The monitor's state and the alerts."""
    audit: AuditRepository
    """The audit trail."""
    export: ExportRepository
    """The regulatory export's reads."""
    leases: LeaseRepository
    """Named leases: which of several processes runs a job alone (the alert monitor)."""

    async def close(self) -> None:
        await self.database.close()


# One read-only member per repository: a part of central declares what it uses by combining these, e.g.
# ``class Needs(HasCatalog, HasAudit, Protocol): ...``; :class:`Repositories` satisfies every such
# combination, and a type checker refuses the part any repository it did not declare.
class HasHalls(Protocol):
    @property
    def halls(self) -> HallRepository: ...


class HasIngest(Protocol):
    @property
    def ingest(self) -> IngestRepository: ...


class HasReports(Protocol):
    @property
    def reports(self) -> ReportRepository: ...


class HasDevices(Protocol):
    @property
    def devices(self) -> DeviceRepository: ...


class HasCatalog(Protocol):
    @property
    def catalog(self) -> CatalogRepository: ...


class HasCommands(Protocol):
    @property
    def commands(self) -> CommandRepository: ...


class HasMonitor(Protocol):
    @property
    def monitor(self) -> MonitorRepository: ...


class HasAudit(Protocol):
    @property
    def audit(self) -> AuditRepository: ...


class HasExport(Protocol):
    @property
    def export(self) -> ExportRepository: ...


class HasLeases(Protocol):
    @property
    def leases(self) -> LeaseRepository: ...


__all__ = [
    "AuditRepository",
    "CatalogRepository",
    "CommandRepository",
    "Database",
    "DeviceRepository",
    "ExportRepository",
    "HallRepository",
    "HasAudit",
    "HasCatalog",
    "HasCommands",
    "HasDevices",
    "HasExport",
    "HasHalls",
    "HasIngest",
    "HasLeases",
    "HasMonitor",
    "HasReports",
    "IngestRepository",
    "LeaseRepository",
    "MonitorRepository",
    "ReportRepository",
    "Repositories",
]
