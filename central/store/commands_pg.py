"""Commands on PostgreSQL: :mod:`central.store.commands_shared`, a status change locking the command's
row (``FOR UPDATE``) while it decides."""

from __future__ import annotations

from .commands_shared import SharedCommands
from .pg_db import PgDatabase


class PgCommands(SharedCommands):
    """:class:`~central.repos.commands.CommandRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        super().__init__(db)
