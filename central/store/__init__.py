"""Central's storage backends: the repositories of :mod:`central.repos` over one database.

``open_store(db)`` picks the backend from the DB argument of the CLI: a filesystem path (or
``sqlite:///path``) is SQLite; ``postgresql://…`` is refused clearly until that backend lands.
"""

from __future__ import annotations

from central.repos import Repositories
from central.repos.errors import BackendUnavailable

from .sqlite import open_sqlite, sqlite_repositories
from .sqlite_db import SqliteDatabase

__all__ = ["SqliteDatabase", "open_sqlite", "open_store", "sqlite_path", "sqlite_repositories"]


def sqlite_path(db: str) -> str:
    """The file path a DB argument names, or raise :class:`BackendUnavailable` for other backends."""
    if db.startswith(("postgresql://", "postgres://", "postgresql+")):
        raise BackendUnavailable("PostgreSQL backend not available yet; give a SQLite file path as --db")
    if db.startswith("sqlite:///"):
        return db[len("sqlite:///"):]  # sqlite:///rel/path, sqlite:////abs/path
    if "://" in db:
        raise BackendUnavailable(f"unknown database URL scheme in {db!r}; give a SQLite file path")
    if not db:
        raise BackendUnavailable("empty --db")
    return db


async def open_store(db: str) -> Repositories:
    """Open the repositories a DB argument names (SQLite path now; PostgreSQL later)."""
    return await open_sqlite(sqlite_path(db))
