"""Halls and API keys on SQLite (:class:`central.repos.halls.HallRepository`)."""

from __future__ import annotations

import json
import sqlite3

from central.repos.halls import HALL_STATES, ApiKeyRecord, HallKeyConflict, HallRecord
from protocols.sync import GENESIS_HASH
from protocols.sync.gamingday import DayRule

from .hall_rows import HALL_COLUMNS as _HALL_COLUMNS
from .hall_rows import KEY_COLUMNS as _KEY_COLUMNS
from .hall_rows import hall_record as _hall
from .hall_rows import key_record as _key_record
from .hall_rows import presence_is_newer as _presence_is_newer
from .rollup_tables import rebuild_day_tables as _rebuild_day_tables
from .sqlhelpers import INSERT_LOG as _INSERT_LOG
from .sqlhelpers import transaction as _transaction
from .sqlite_db import SqliteDatabase


class SqliteHalls:
    """:class:`~central.repos.halls.HallRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def add_hall(self, hall: str, public_key_pem: str, *, now: int, replace: bool = False) -> str:
        def body(con: sqlite3.Connection) -> str:
            row = con.execute("SELECT public_key_pem, state FROM halls WHERE id = ?", (hall,)).fetchone()
            if row is None:
                con.execute("INSERT INTO halls (id, public_key_pem, added_at, last_seq, last_hash)"
                            " VALUES (?, ?, ?, 0, ?)", (hall, public_key_pem, now, GENESIS_HASH))
                return "added"
            if row[1] == "removed":   # its data stayed; registering it again is a deliberate act
                if not replace:
                    raise HallKeyConflict(f"hall {hall!r} was removed; use --replace to register it again")
                con.execute("UPDATE halls SET public_key_pem = ?, state = NULL, state_at = ? WHERE id = ?",
                            (public_key_pem, now, hall))
                con.execute(_INSERT_LOG, (now, hall, None, "manual", "removed hall registered again"))
                return "replaced"
            if row[0] == public_key_pem:
                return "unchanged"
            if not replace:
                raise HallKeyConflict(f"hall {hall!r} is registered with a different key; use --replace to change it")
            con.execute("UPDATE halls SET public_key_pem = ? WHERE id = ?", (public_key_pem, hall))
            con.execute(_INSERT_LOG, (now, hall, None, "manual", "hall public key replaced"))
            return "replaced"

        return await self._db.writer.run(lambda con: _transaction(con, body))

    async def forget_presence(self, hall: str, *, now: int) -> bool:
        def body(con: sqlite3.Connection) -> bool:
            row = con.execute("SELECT online, session FROM halls WHERE id = ?", (hall,)).fetchone()
            if row is None:
                return False
            con.execute("UPDATE halls SET online = NULL, session = NULL, status_at = NULL WHERE id = ?", (hall,))
            con.execute(_INSERT_LOG, (now, hall, None, "manual",
                                      f"presence forgotten (was online={row[0]}, session {row[1]})"))
            return True

        return await self._db.writer.run(lambda con: _transaction(con, body))

    async def set_hall_state(self, hall: str, state: str, *, now: int) -> HallRecord | None:
        if state not in HALL_STATES:
            raise ValueError(f"a hall's state is one of {', '.join(HALL_STATES)}, not {state!r}")

        def body(con: sqlite3.Connection) -> HallRecord | None:
            row = con.execute(f"SELECT {_HALL_COLUMNS} FROM halls WHERE id = ?", (hall,)).fetchone()
            if row is None:
                return None
            before = _hall(row)
            if before.state != state:
                con.execute("UPDATE halls SET state = ?, state_at = ? WHERE id = ?",
                            (None if state == "active" else state, now, hall))
                con.execute(_INSERT_LOG, (now, hall, None, "manual", f"hall {before.state} → {state}"))
            return before

        return await self._db.writer.run(lambda con: _transaction(con, body))

    async def get_hall(self, hall: str) -> HallRecord | None:
        def body(con: sqlite3.Connection) -> HallRecord | None:
            row = con.execute(f"SELECT {_HALL_COLUMNS} FROM halls WHERE id = ?", (hall,)).fetchone()
            return None if row is None else _hall(row)

        return await self._db.reader.run(body)

    async def halls(self) -> list[HallRecord]:
        def body(con: sqlite3.Connection) -> list[HallRecord]:
            rows = con.execute(f"SELECT {_HALL_COLUMNS} FROM halls ORDER BY id")
            return [_hall(row) for row in rows]

        return await self._db.reader.run(body)

    async def set_day_rule(self, hall: str, rule: DayRule, *, now: int) -> HallRecord | None:
        def body(con: sqlite3.Connection) -> HallRecord | None:
            row = con.execute(f"SELECT {_HALL_COLUMNS} FROM halls WHERE id = ?", (hall,)).fetchone()
            if row is None:
                return None
            old = _hall(row)
            if old.day_rule == rule:
                return old
            con.execute("UPDATE halls SET timezone = ?, gaming_day_start = ?, settings_version = ? WHERE id = ?",
                        (rule.zone, rule.start, old.settings_version + 1, hall))
            _rebuild_day_tables(con, hall, rule, rollups=True)
            con.execute(_INSERT_LOG, (now, hall, None, "manual",
                                      f"gaming day changed from {old.timezone} {old.gaming_day_start} to "
                                      f"{rule.zone} {rule.start}; rollups re-bucketed from the stored events"))
            new = con.execute(f"SELECT {_HALL_COLUMNS} FROM halls WHERE id = ?", (hall,)).fetchone()
            return _hall(new)

        return await self._db.writer.run(lambda con: _transaction(con, body))

    async def set_presence(self, hall: str, *, online: bool, session: int, at: int) -> bool:
        def body(con: sqlite3.Connection) -> bool:
            row = con.execute("SELECT online, session, status_at FROM halls WHERE id = ?", (hall,)).fetchone()
            if row is None or not _presence_is_newer(row[0], row[1], row[2], online, session, at):
                return False
            con.execute("UPDATE halls SET online = ?, session = ?, status_at = ? WHERE id = ?",
                        (int(online), session, at, hall))
            return True

        return await self._db.writer.run(lambda con: _transaction(con, body))

    async def add_api_key(self, record: ApiKeyRecord) -> None:
        halls = None if record.halls is None else json.dumps(list(record.halls))
        params = (record.id, record.role, record.secret_hash, halls, record.created_at, record.name,
                  record.expires_at, record.revoked_at)
        await self._db.writer.run(lambda con: _transaction(con, lambda c: c.execute(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", params)))

    async def api_key(self, key_id: str) -> ApiKeyRecord | None:
        def body(con: sqlite3.Connection) -> ApiKeyRecord | None:
            row = con.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            return None if row is None else _key_record(row)

        return await self._db.reader.run(body)

    async def api_keys(self) -> list[ApiKeyRecord]:
        def body(con: sqlite3.Connection) -> list[ApiKeyRecord]:
            rows = con.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id").fetchall()
            return [_key_record(row) for row in rows]

        return await self._db.reader.run(body)

    async def update_api_key(self, key_id: str, *, secret_hash: str | None = None,
                             revoked_at: int | None = None) -> ApiKeyRecord | None:
        def body(c: sqlite3.Connection) -> ApiKeyRecord | None:
            row = c.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                return None
            c.execute("UPDATE api_keys SET secret_hash = COALESCE(?, secret_hash),"
                      " revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (secret_hash, revoked_at, key_id))
            return _key_record(row)

        return await self._db.writer.run(lambda con: _transaction(con, body))
