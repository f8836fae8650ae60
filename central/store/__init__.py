"""Central's storage: one small async interface (:class:`Store`) and its backends.

``open_store(db)`` picks the backend from the DB argument of the CLI: a filesystem path (or
``sqlite:///path``) is SQLite; ``postgresql://…`` is refused clearly until that backend lands.
"""

from __future__ import annotations

from .base import (
    COMMAND_STATUSES,
    FINAL_COMMAND_STATUSES,
    GROUP_BY,
    HALL_STATES,
    LOG_KINDS,
    ROLES,
    ApiKeyRecord,
    AuditEntry,
    BackendUnavailable,
    CommandRecord,
    DeviceRecord,
    GgrRow,
    HallKeyConflict,
    HallRecord,
    IngestResult,
    LogEntry,
    Store,
    StoreError,
)
from .sqlite import SqliteStore
from .staging import StagedEvents, stage_events

__all__ = [
    "COMMAND_STATUSES",
    "FINAL_COMMAND_STATUSES",
    "GROUP_BY",
    "HALL_STATES",
    "LOG_KINDS",
    "ROLES",
    "ApiKeyRecord",
    "AuditEntry",
    "BackendUnavailable",
    "CommandRecord",
    "DeviceRecord",
    "GgrRow",
    "HallKeyConflict",
    "HallRecord",
    "IngestResult",
    "LogEntry",
    "SqliteStore",
    "StagedEvents",
    "Store",
    "StoreError",
    "open_store",
    "stage_events",
]


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


async def open_store(db: str) -> Store:
    """Open the store a DB argument names (SQLite path now; PostgreSQL later)."""
    return await SqliteStore.open(sqlite_path(db))
