"""Monitoring on SQLite: :mod:`central.store.monitor_shared`, each unit's reads in one call on the reader,
a sync in one BEGIN IMMEDIATE transaction on the writer."""

from __future__ import annotations

from .monitor_shared import SharedMonitor
from .sqlite_db import SqliteDatabase


class SqliteMonitor(SharedMonitor):
    """:class:`~central.repos.monitor.MonitorRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)
