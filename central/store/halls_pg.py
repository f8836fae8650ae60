"""Halls and API keys on PostgreSQL (:class:`central.repos.halls.HallRepository`).

Every read-then-write locks the hall's row (``FOR UPDATE``) inside its transaction, so it serialises
with ingest of that hall (which locks the same row) and with other processes on the database."""

from __future__ import annotations

import json

from central.repos.halls import HALL_STATES, ApiKeyRecord, HallKeyConflict, HallRecord
from protocols.sync import GENESIS_HASH
from protocols.sync.gamingday import DayRule

from .hall_rows import HALL_COLUMNS, KEY_COLUMNS, hall_record, key_record, presence_is_newer
from .pg_db import PgConn, PgDatabase
from .rollup_pg import rebuild_day_tables
from .sqlhelpers import INSERT_LOG


async def _locked(con: PgConn, hall: str) -> HallRecord | None:
    row = await con.fetchrow(f"SELECT {HALL_COLUMNS} FROM halls WHERE id = ? FOR UPDATE", hall)
    return None if row is None else hall_record(row)


class PgHalls:
    """:class:`~central.repos.halls.HallRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def add_hall(self, hall: str, public_key_pem: str, *, now: int, replace: bool = False) -> str:
        async with self._db.transaction() as con:
            inserted = await con.fetchval(
                "INSERT INTO halls (id, public_key_pem, added_at, last_seq, last_hash) VALUES (?, ?, ?, 0, ?)"
                " ON CONFLICT (id) DO NOTHING RETURNING id", hall, public_key_pem, now, GENESIS_HASH)
            if inserted is not None:
                return "added"
            old = await _locked(con, hall)
            assert old is not None   # it conflicted, and halls are never deleted
            if old.state == "removed":   # its data stayed; registering it again is a deliberate act
                if not replace:
                    raise HallKeyConflict(f"hall {hall!r} was removed; use --replace to register it again")
                await con.execute("UPDATE halls SET public_key_pem = ?, state = NULL, state_at = ? WHERE id = ?",
                                  public_key_pem, now, hall)
                await con.execute(INSERT_LOG, now, hall, None, "manual", "removed hall registered again")
                return "replaced"
            if old.public_key_pem == public_key_pem:
                return "unchanged"
            if not replace:
                raise HallKeyConflict(f"hall {hall!r} is registered with a different key; use --replace to change it")
            await con.execute("UPDATE halls SET public_key_pem = ? WHERE id = ?", public_key_pem, hall)
            await con.execute(INSERT_LOG, now, hall, None, "manual", "hall public key replaced")
            return "replaced"

    async def forget_presence(self, hall: str, *, now: int) -> bool:
        async with self._db.transaction() as con:
            old = await _locked(con, hall)
            if old is None:
                return False
            await con.execute("UPDATE halls SET online = NULL, session = NULL, status_at = NULL WHERE id = ?", hall)
            was = None if old.online is None else int(old.online)
            await con.execute(INSERT_LOG, now, hall, None, "manual",
                              f"presence forgotten (was online={was}, session {old.session})")
            return True

    async def set_hall_state(self, hall: str, state: str, *, now: int) -> HallRecord | None:
        if state not in HALL_STATES:
            raise ValueError(f"a hall's state is one of {', '.join(HALL_STATES)}, not {state!r}")
        async with self._db.transaction() as con:
            before = await _locked(con, hall)
            if before is None:
                return None
            if before.state != state:
                await con.execute("UPDATE halls SET state = ?, state_at = ? WHERE id = ?",
                                  None if state == "active" else state, now, hall)
                await con.execute(INSERT_LOG, now, hall, None, "manual", f"hall {before.state} → {state}")
            return before

    async def get_hall(self, hall: str) -> HallRecord | None:
        row = await self._db.fetchrow(f"SELECT {HALL_COLUMNS} FROM halls WHERE id = ?", hall)
        return None if row is None else hall_record(row)

    async def halls(self) -> list[HallRecord]:
        return [hall_record(row) for row in await self._db.fetch(f"SELECT {HALL_COLUMNS} FROM halls ORDER BY id")]

    async def set_day_rule(self, hall: str, rule: DayRule, *, now: int) -> HallRecord | None:
        async with self._db.transaction() as con:
            old = await _locked(con, hall)   # ingest of the hall waits: its rollups are rebuilt here
            if old is None:
                return None
            if old.day_rule == rule:
                return old
            await con.execute("UPDATE halls SET timezone = ?, gaming_day_start = ?, settings_version = ? WHERE id = ?",
                              rule.zone, rule.start, old.settings_version + 1, hall)
            await rebuild_day_tables(con, hall, rule, rollups=True)
            await con.execute(INSERT_LOG, now, hall, None, "manual",
                              f"gaming day changed from {old.timezone} {old.gaming_day_start} to "
                              f"{rule.zone} {rule.start}; rollups re-bucketed from the stored events")
            return hall_record(await con.fetchrow(f"SELECT {HALL_COLUMNS} FROM halls WHERE id = ?", hall))

    async def set_presence(self, hall: str, *, online: bool, session: int, at: int) -> bool:
        async with self._db.transaction() as con:
            row = await con.fetchrow("SELECT online, session, status_at FROM halls WHERE id = ? FOR UPDATE", hall)
            if row is None or not presence_is_newer(row[0], row[1], row[2], online, session, at):
                return False
            await con.execute("UPDATE halls SET online = ?, session = ?, status_at = ? WHERE id = ?",
                              int(online), session, at, hall)
            return True

    async def add_api_key(self, record: ApiKeyRecord) -> None:
        halls = None if record.halls is None else json.dumps(list(record.halls))
        async with self._db.transaction() as con:
            await con.execute(f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", record.id,
                              record.role, record.secret_hash, halls, record.created_at, record.name,
                              record.expires_at, record.revoked_at)

    async def api_key(self, key_id: str) -> ApiKeyRecord | None:
        row = await self._db.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", key_id)
        return None if row is None else key_record(row)

    async def api_keys(self) -> list[ApiKeyRecord]:
        rows = await self._db.fetch(f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
        return [key_record(row) for row in rows]

    async def update_api_key(self, key_id: str, *, secret_hash: str | None = None,
                             revoked_at: int | None = None) -> ApiKeyRecord | None:
        async with self._db.transaction() as con:
            row = await con.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ? FOR UPDATE", key_id)
            if row is None:
                return None
            await con.execute("UPDATE api_keys SET secret_hash = COALESCE(?, secret_hash),"
                              " revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", secret_hash, revoked_at, key_id)
            return key_record(row)
