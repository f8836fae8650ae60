"""The PostgreSQL backend: one :class:`~central.store.pg_db.PgDatabase` (a pool, its migrations) and a
repository per feature over it. A feature whose repository is not on PostgreSQL yet gets a stand-in
that refuses every call with :class:`~central.repos.errors.BackendUnavailable` (saying which), so a
process fails loudly on first use rather than reading the wrong database."""

from __future__ import annotations

from typing import Any, cast

from central.repos import Repositories
from central.repos.errors import BackendUnavailable

from .devices_pg import PgDevices
from .halls_pg import PgHalls
from .ingest_pg import PgIngest
from .pg_db import PgDatabase
from .reports_pg import PgReports


class _NotOnPostgres:
    """A repository of a feature the PostgreSQL backend does not have yet."""

    def __init__(self, feature: str) -> None:
        self._feature = feature

    def __getattr__(self, name: str) -> Any:
        raise BackendUnavailable(f"the {self._feature} repository is not available on PostgreSQL yet "
                                 f"({self._feature}.{name}); use a SQLite --db for it")


def pg_repositories(db: PgDatabase) -> Repositories:
    """Every repository over one open PostgreSQL database."""
    def missing(feature: str) -> Any:
        return cast(Any, _NotOnPostgres(feature))

    return Repositories(database=db, halls=PgHalls(db), ingest=PgIngest(db), reports=PgReports(db),
                        devices=PgDevices(db), catalog=missing("catalog"), commands=missing("commands"),
                        monitor=missing("monitor"), audit=missing("audit"), export=missing("export"))


async def open_postgres(dsn: str) -> Repositories:
    """Connect to the PostgreSQL database ``dsn`` names and bring its schema up to date."""
    return pg_repositories(await PgDatabase.open(dsn))
