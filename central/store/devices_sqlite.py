"""Devices and the floor view's reads on SQLite: :mod:`central.store.devices_shared`,
on the reader thread, all reads of a floor view in one call."""

from __future__ import annotations

from .devices_shared import SharedDevices
from .sqlite_db import SqliteDatabase


class SqliteDevices(SharedDevices):
    """:class:`~central.repos.devices.DeviceRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)
