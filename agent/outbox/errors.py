"""Outbox errors and how a storage failure is named in logs, alarms and the fail-closed hook."""

from __future__ import annotations

import sqlite3


class OutboxError(Exception):
    """Base of the outbox's own errors."""


class OutboxUnavailable(OutboxError):
    """The outbox cannot take these events: it is failed and its memory bound is reached, it is
    stopping, or it could not open its database. The caller must stop generating events (the agent
    locks the machines); nothing the outbox already accepted is dropped."""


class ChainMismatch(OutboxError):
    """The database disagrees with the chain the outbox holds in memory (e.g. rows vanished or a
    different file was put in place). The outbox stays failed rather than fork the chain."""


class HallMismatch(OutboxError):
    """The database belongs to another hall: one chain per hall, never mixed."""


def failure_reason(exc: BaseException) -> str:
    """A short, stable reason for an alarm: the SQLite error name when there is one.

    ``SQLITE_FULL`` (disk full), ``SQLITE_IOERR_*`` (disk I/O), ``SQLITE_CORRUPT``/``SQLITE_NOTADB``
    (broken file), ``SQLITE_CANTOPEN``/``SQLITE_READONLY`` (permissions, missing directory).
    """
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(exc, sqlite3.Error) and name:
        return f"{name}: {exc}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__} errno {exc.errno}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"
