"""Monitoring on PostgreSQL: :mod:`central.store.monitor_shared`, each unit's reads in one snapshot, a sync
under a transaction-level advisory lock so two monitors on one database never interleave."""

from __future__ import annotations

from .monitor_shared import SharedMonitor
from .pg_db import PgDatabase


class PgMonitor(SharedMonitor):
    """:class:`~central.repos.monitor.MonitorRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        super().__init__(db)
