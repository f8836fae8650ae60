"""Commands on SQLite: :mod:`central.store.commands_shared` on the reader and writer threads."""

from __future__ import annotations

from .commands_shared import SharedCommands
from .sqlite_db import SqliteDatabase


class SqliteCommands(SharedCommands):
    """:class:`~central.repos.commands.CommandRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(db)
