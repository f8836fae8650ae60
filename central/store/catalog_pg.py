"""The game catalog on PostgreSQL (:class:`central.repos.catalog.CatalogRepository`): the SQL and the
records of the SQLite backend (:mod:`central.store.catalog_sqlite`, which keeps to SQL both accept)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from central.repos.catalog import CatalogConflict, CatalogGame, Placement, Provider, RuleRecord

from .catalog_sqlite import _GAME_COLUMNS, _RULE_COLUMNS, _game, _rule
from .pg_db import PgConn, PgDatabase
from .sqlhelpers import hall_scope as _hall_filter
from .sqlhelpers import where_clause as _where

_DECODER = msgspec.json.Decoder()


async def _rule_in(con: PgConn, rule_id: str, *, lock: bool = False) -> RuleRecord | None:
    sql = f"SELECT {_RULE_COLUMNS} FROM catalog_rules WHERE id = ?" + (" FOR UPDATE" if lock else "")
    row = await con.fetchrow(sql, rule_id)
    if row is None:
        return None
    commands = [r[0] for r in await con.fetch(
        "SELECT command FROM catalog_rule_commands WHERE rule = ? ORDER BY command", rule_id)]
    return _rule(row, commands)


class PgCatalog:
    """:class:`~central.repos.catalog.CatalogRepository` on a :class:`PgDatabase`."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def catalog_providers(self) -> list[Provider]:
        rows = await self._db.fetch("SELECT id, name, status FROM catalog_providers ORDER BY id")
        return [Provider(*r) for r in rows]

    async def put_provider(self, provider: Provider) -> Provider | None:
        async with self._db.transaction() as con:
            row = await con.fetchrow("SELECT id, name, status FROM catalog_providers WHERE id = ? FOR UPDATE",
                                     provider.id)
            await con.execute("INSERT INTO catalog_providers (id, name, status) VALUES (?, ?, ?)"
                              " ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status",
                              provider.id, provider.name, provider.status)
            return None if row is None else Provider(*row)

    async def catalog_games(self) -> list[CatalogGame]:
        return [_game(r) for r in await self._db.fetch(f"SELECT {_GAME_COLUMNS} FROM catalog_games ORDER BY id")]

    async def put_game(self, game: CatalogGame) -> CatalogGame | None:
        async with self._db.transaction() as con:
            if await con.fetchrow("SELECT 1 FROM catalog_providers WHERE id = ? FOR SHARE", game.provider) is None:
                raise CatalogConflict(f"provider {game.provider!r} is not in the catalog")
            row = await con.fetchrow(f"SELECT {_GAME_COLUMNS} FROM catalog_games WHERE id = ? FOR UPDATE", game.id)
            await con.execute(
                f"INSERT INTO catalog_games ({_GAME_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, name = excluded.name,"
                " category = excluded.category, rtp_bp = excluded.rtp_bp, status = excluded.status,"
                " min_bet = excluded.min_bet, max_bet = excluded.max_bet, sas_game_id = excluded.sas_game_id,"
                " paytable_id = excluded.paytable_id",
                game.id, game.provider, game.name, game.category, game.rtp_bp, game.status, game.min_bet,
                game.max_bet, game.sas_game_id, game.paytable_id)
            return None if row is None else _game(row)

    async def placements(self, *, hall: str | None = None, halls: Sequence[str] | None = None,
                         device: str | None = None) -> list[Placement]:
        where: list[str] = []
        params: list[Any] = []
        if not _hall_filter(where, params, hall, halls):
            return []
        if device is not None:
            where.append("device = ?")
            params.append(device)
        sql = (f"SELECT hall, device, number, game, enabled FROM catalog_placements{_where(where)}"
               " ORDER BY hall, device, number")
        return [Placement(r[0], r[1], r[2], r[3], bool(r[4])) for r in await self._db.fetch(sql, *params)]

    async def replace_placements(self, hall: str, device: str, placements: Sequence[Placement]) -> list[Placement]:
        async with self._db.transaction() as con:
            for p in placements:
                if await con.fetchrow("SELECT 1 FROM catalog_games WHERE id = ? FOR SHARE", p.game) is None:
                    raise CatalogConflict(f"game {p.game!r} is not in the catalog")
            before = [Placement(r[0], r[1], r[2], r[3], bool(r[4])) for r in await con.fetch(
                "SELECT hall, device, number, game, enabled FROM catalog_placements WHERE hall = ? AND device = ?"
                " ORDER BY number FOR UPDATE", hall, device)]
            await con.execute("DELETE FROM catalog_placements WHERE hall = ? AND device = ?", hall, device)
            if placements:
                await con.executemany("INSERT INTO catalog_placements (hall, device, number, game, enabled)"
                                      " VALUES (?, ?, ?, ?, ?)",
                                      [(hall, device, p.number, p.game, int(p.enabled)) for p in placements])
            return before

    async def add_rule(self, rule: RuleRecord) -> None:
        async with self._db.transaction() as con:
            await con.execute(f"INSERT INTO catalog_rules ({_RULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              rule.id, rule.kind, json.dumps(rule.params, sort_keys=True),
                              None if rule.halls is None else json.dumps(list(rule.halls)), rule.created_by,
                              rule.created_at, rule.status, rule.updated_at)
            if rule.commands:
                await con.executemany("INSERT INTO catalog_rule_commands (rule, command) VALUES (?, ?)",
                                      [(rule.id, c) for c in rule.commands])

    async def add_rule_commands(self, rule_id: str, command_ids: Sequence[str]) -> None:
        if not command_ids:
            return
        async with self._db.transaction() as con:
            await con.executemany("INSERT INTO catalog_rule_commands (rule, command) VALUES (?, ?)",
                                  [(rule_id, c) for c in command_ids])

    async def set_rule_status(self, rule_id: str, status: str, at: int) -> RuleRecord | None:
        async with self._db.transaction() as con:
            before = await _rule_in(con, rule_id, lock=True)
            if before is not None:
                await con.execute("UPDATE catalog_rules SET status = ?, updated_at = ? WHERE id = ?",
                                  status, at, rule_id)
            return before

    async def rule(self, rule_id: str) -> RuleRecord | None:
        async with self._db.reading() as con:
            return await _rule_in(con, rule_id)

    async def rules(self, *, kind: str | None = None, status: str | None = None, limit: int = 100) -> list[RuleRecord]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("kind", kind), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        params.append(max(1, min(limit, 10_000)))
        sql = f"SELECT {_RULE_COLUMNS} FROM catalog_rules{_where(where)} ORDER BY created_at DESC, id LIMIT ?"
        out = []
        async with self._db.reading() as con:
            for row in await con.fetch(sql, *params):
                commands = [r[0] for r in await con.fetch(
                    "SELECT command FROM catalog_rule_commands WHERE rule = ? ORDER BY command", row[0])]
                out.append(_rule(row, commands))
        return out

    async def latest_identities(self, *, hall: str | None = None,
                                halls: Sequence[str] | None = None) -> list[tuple[str, str, int, dict[str, Any]]]:
        where: list[str] = ["type = 'device.status'", "data LIKE ?"]
        params: list[Any] = ['%"status":"identity"%']
        if not _hall_filter(where, params, hall, halls):
            return []
        sql = f"SELECT hall, device, agent_time, data FROM events{_where(where)} ORDER BY hall, device, seq"
        latest: dict[tuple[str, str], tuple[str, str, int, dict[str, Any]]] = {}
        for h, d, at, raw in await self._db.fetch(sql, *params):
            data = _DECODER.decode(raw)
            if isinstance(data, dict) and data.get("status") == "identity":
                latest[(h, d)] = (h, d, at, data)
        return [latest[k] for k in sorted(latest)]

    async def event_counts(self, types: Sequence[str], *, time_from: int | None = None, time_to: int | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> dict[tuple[str, str], int]:
        if not types:
            return {}
        params: list[Any] = []
        if tuple(types) == ("game.error",):   # a literal: the partial index events_errors applies
            where: list[str] = ["type = 'game.error'"]
        else:
            where = ["type = ANY(?::text[])"]
            params.append(list(types))
        if not _hall_filter(where, params, hall, halls):
            return {}
        for clause, value in (("agent_time >= ?", time_from), ("agent_time < ?", time_to)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT hall, device, COUNT(*) FROM events{_where(where)} GROUP BY hall, device"
        return {(r[0], r[1]): r[2] for r in await self._db.fetch(sql, *params)}
