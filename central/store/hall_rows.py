"""Rows of the ``halls`` and ``api_keys`` tables as records, and the presence ordering rule: shared by the
SQLite and PostgreSQL hall repositories (same columns, same meaning)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from central.repos.halls import ApiKeyRecord, HallRecord
from protocols.sync.gamingday import DEFAULT_START, DEFAULT_ZONE

HALL_COLUMNS = ("id, public_key_pem, added_at, last_seq, last_hash, online, session, status_at, timezone,"
                 " gaming_day_start, settings_version, state")


KEY_COLUMNS: Final = "id, role, secret_hash, halls, created_at, name, expires_at, revoked_at"


def presence_is_newer(stored_online: int | None, stored_session: int | None, stored_at: int | None,
                       online: bool, session: int, at: int) -> bool:
    """The ordering rule of :meth:`central.repos.halls.HallRepository.set_presence` (read its docstring)."""
    if stored_session is None or session > stored_session:
        return True
    if session < stored_session or not stored_online:
        return False  # an older connection, or this one already ended (offline)
    return not online or at > (stored_at or 0)  # a redelivered retained message is not news


def hall_record(row: Sequence[Any]) -> HallRecord:
    return HallRecord(id=row[0], public_key_pem=row[1], added_at=row[2], last_seq=row[3], last_hash=row[4],
                      online=None if row[5] is None else bool(row[5]), session=row[6], status_at=row[7],
                      timezone=row[8] or DEFAULT_ZONE, gaming_day_start=row[9] or DEFAULT_START,
                      settings_version=row[10] or 0, state=row[11] or "active")


def key_record(row: Sequence[Any]) -> ApiKeyRecord:
    halls = None if row[3] is None else tuple(json.loads(row[3]))
    return ApiKeyRecord(id=row[0], role=row[1], secret_hash=row[2], halls=halls, created_at=row[4], name=row[5],
                        expires_at=row[6], revoked_at=row[7])
