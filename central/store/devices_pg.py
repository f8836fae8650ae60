"""Devices and the floor view's reads on PostgreSQL: :mod:`central.store.devices_shared`,
the reads of a floor view in one REPEATABLE READ snapshot."""

from __future__ import annotations

from .devices_shared import SharedDevices
from .pg_db import PgDatabase


class PgDevices(SharedDevices):
    """:class:`~central.repos.devices.DeviceRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        super().__init__(db)
