"""Central's storage backends: the repositories of :mod:`central.repos` over one database.

``open_store(db)`` picks the backend from the DB argument of the CLI: a filesystem path (or
``sqlite:///path``) is SQLite; ``postgresql://…`` (or ``postgres://…``) is PostgreSQL.
"""

from __future__ import annotations

from central.repos import Repositories
from central.repos.errors import BackendUnavailable

from .sqlite import open_sqlite, sqlite_repositories
from .sqlite_db import SqliteDatabase

__all__ = ["SqliteDatabase", "is_postgres_url", "open_sqlite", "open_store", "sqlite_path", "sqlite_repositories"]


def is_postgres_url(db: str) -> bool:
    """Whether a DB argument names a PostgreSQL database (``postgresql://…`` or ``postgres://…``)."""
    return db.startswith(("postgresql://", "postgres://"))


def sqlite_path(db: str) -> str:
    """The file path a DB argument names, or raise :class:`BackendUnavailable` for other backends."""
    if is_postgres_url(db):
        raise BackendUnavailable("this needs a SQLite file path as --db, not a PostgreSQL URL")
    if db.startswith("postgresql+"):
        raise BackendUnavailable(f"give PostgreSQL as postgresql://user@host/db, not {db.split(':', 1)[0]}://")
    if db.startswith("sqlite:///"):
        return db[len("sqlite:///"):]  # sqlite:///rel/path, sqlite:////abs/path
    if "://" in db:
        raise BackendUnavailable(f"unknown database URL scheme in {db!r}; give a SQLite file path")
    if not db:
        raise BackendUnavailable("empty --db")
    return db


async def open_store(db: str) -> Repositories:
    """Open the repositories a DB argument names: a SQLite path, or a ``postgresql://`` URL."""
    if is_postgres_url(db):
        from .postgres import open_postgres  # the driver is imported only when PostgreSQL is used

        return await open_postgres(db)
    return await open_sqlite(sqlite_path(db))
