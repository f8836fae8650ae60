"""The game catalog on PostgreSQL: :mod:`central.store.catalog_shared`, a write's reads locking the rows
it depends on (``FOR UPDATE`` / ``FOR SHARE``), several reads in one snapshot."""

from __future__ import annotations

from .catalog_shared import SharedCatalog
from .pg_db import PgDatabase


class PgCatalog(SharedCatalog):
    """:class:`~central.repos.catalog.CatalogRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        super().__init__(db)
