"""The game catalog on SQLite: :mod:`central.store.catalog_shared` (the SQL both databases accept) on
the reader and writer threads."""

from __future__ import annotations

from .catalog_shared import SharedCatalog
from .sqlite_db import SqliteDatabase


class SqliteCatalog(SharedCatalog):
    """:class:`~central.repos.catalog.CatalogRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)
