"""The game catalog's part of the SQLite store: providers, games, placements, rules, and the reads the
catalog reports need (rollup cells, latest identities, event counts).

A repository over the :class:`~central.store.sqlite_db.SqliteDatabase`; kept
here so the catalog's SQL is in one file. Only SQL PostgreSQL also accepts: no JSON functions (the
identity events' data is decoded in Python), ``LIKE`` only as a pre-filter that Python re-checks.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

from central.repos.catalog import CatalogConflict, CatalogGame, Placement, Provider, RuleRecord

from .sqlhelpers import hall_scope as _hall_filter
from .sqlhelpers import transaction as _tx
from .sqlhelpers import where_clause as _where
from .sqlite_db import SqliteDatabase

T = TypeVar("T")
_DECODER = msgspec.json.Decoder()
_GAME_COLUMNS = "id, provider, name, category, rtp_bp, status, min_bet, max_bet, sas_game_id, paytable_id"
_RULE_COLUMNS = "id, kind, params, halls, created_by, created_at, status, updated_at"








def _game(r: Sequence[Any]) -> CatalogGame:
    return CatalogGame(id=r[0], provider=r[1], name=r[2], category=r[3], rtp_bp=r[4], status=r[5], min_bet=r[6],
                       max_bet=r[7], sas_game_id=r[8], paytable_id=r[9])


def _rule(r: Sequence[Any], commands: list[str]) -> RuleRecord:
    return RuleRecord(id=r[0], kind=r[1], params=json.loads(r[2]),
                      halls=None if r[3] is None else tuple(json.loads(r[3])), created_by=r[4], created_at=r[5],
                      status=r[6], updated_at=r[7], commands=tuple(commands))


class SqliteCatalog:
    """:class:`~central.repos.catalog.CatalogRepository` on a :class:`SqliteDatabase`."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    # providers -----------------------------------------------------------------------------------
    async def catalog_providers(self) -> list[Provider]:
        def body(con: sqlite3.Connection) -> list[Provider]:
            return [Provider(*r) for r in con.execute("SELECT id, name, status FROM catalog_providers ORDER BY id")]

        return await self._db.reader.run(body)

    async def put_provider(self, provider: Provider) -> Provider | None:
        def body(con: sqlite3.Connection) -> Provider | None:
            row = con.execute("SELECT id, name, status FROM catalog_providers WHERE id = ?", (provider.id,)).fetchone()
            con.execute("INSERT INTO catalog_providers (id, name, status) VALUES (?, ?, ?)"
                        " ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status",
                        (provider.id, provider.name, provider.status))
            return None if row is None else Provider(*row)

        return await self._db.writer.run(lambda con: _tx(con, body))

    # games ---------------------------------------------------------------------------------------
    async def catalog_games(self) -> list[CatalogGame]:
        def body(con: sqlite3.Connection) -> list[CatalogGame]:
            return [_game(r) for r in con.execute(f"SELECT {_GAME_COLUMNS} FROM catalog_games ORDER BY id")]

        return await self._db.reader.run(body)

    async def put_game(self, game: CatalogGame) -> CatalogGame | None:
        def body(con: sqlite3.Connection) -> CatalogGame | None:
            if con.execute("SELECT 1 FROM catalog_providers WHERE id = ?", (game.provider,)).fetchone() is None:
                raise CatalogConflict(f"provider {game.provider!r} is not in the catalog")
            row = con.execute(f"SELECT {_GAME_COLUMNS} FROM catalog_games WHERE id = ?", (game.id,)).fetchone()
            con.execute(
                f"INSERT INTO catalog_games ({_GAME_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, name = excluded.name,"
                " category = excluded.category, rtp_bp = excluded.rtp_bp, status = excluded.status,"
                " min_bet = excluded.min_bet, max_bet = excluded.max_bet, sas_game_id = excluded.sas_game_id,"
                " paytable_id = excluded.paytable_id",
                (game.id, game.provider, game.name, game.category, game.rtp_bp, game.status, game.min_bet,
                 game.max_bet, game.sas_game_id, game.paytable_id))
            return None if row is None else _game(row)

        return await self._db.writer.run(lambda con: _tx(con, body))

    # placements ----------------------------------------------------------------------------------
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

        def body(con: sqlite3.Connection) -> list[Placement]:
            return [Placement(r[0], r[1], r[2], r[3], bool(r[4])) for r in con.execute(sql, params)]

        return await self._db.reader.run(body)

    async def replace_placements(self, hall: str, device: str, placements: Sequence[Placement]) -> list[Placement]:
        def body(con: sqlite3.Connection) -> list[Placement]:
            for p in placements:
                if con.execute("SELECT 1 FROM catalog_games WHERE id = ?", (p.game,)).fetchone() is None:
                    raise CatalogConflict(f"game {p.game!r} is not in the catalog")
            before = [Placement(r[0], r[1], r[2], r[3], bool(r[4])) for r in con.execute(
                "SELECT hall, device, number, game, enabled FROM catalog_placements WHERE hall = ? AND device = ?"
                " ORDER BY number", (hall, device))]
            con.execute("DELETE FROM catalog_placements WHERE hall = ? AND device = ?", (hall, device))
            con.executemany("INSERT INTO catalog_placements (hall, device, number, game, enabled)"
                            " VALUES (?, ?, ?, ?, ?)",
                            [(hall, device, p.number, p.game, int(p.enabled)) for p in placements])
            return before

        return await self._db.writer.run(lambda con: _tx(con, body))

    # rules ---------------------------------------------------------------------------------------
    async def add_rule(self, rule: RuleRecord) -> None:
        row = (rule.id, rule.kind, json.dumps(rule.params, sort_keys=True),
               None if rule.halls is None else json.dumps(list(rule.halls)), rule.created_by, rule.created_at,
               rule.status, rule.updated_at)

        def body(con: sqlite3.Connection) -> None:
            con.execute(f"INSERT INTO catalog_rules ({_RULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            con.executemany("INSERT INTO catalog_rule_commands (rule, command) VALUES (?, ?)",
                            [(rule.id, c) for c in rule.commands])

        await self._db.writer.run(lambda con: _tx(con, body))

    async def add_rule_commands(self, rule_id: str, command_ids: Sequence[str]) -> None:
        rows = [(rule_id, c) for c in command_ids]
        await self._db.writer.run(lambda con: _tx(con, lambda c: c.executemany(
            "INSERT INTO catalog_rule_commands (rule, command) VALUES (?, ?)", rows)))

    async def set_rule_status(self, rule_id: str, status: str, at: int) -> RuleRecord | None:
        def body(con: sqlite3.Connection) -> RuleRecord | None:
            before = self._rule_in(con, rule_id)
            if before is not None:
                con.execute("UPDATE catalog_rules SET status = ?, updated_at = ? WHERE id = ?", (status, at, rule_id))
            return before

        return await self._db.writer.run(lambda con: _tx(con, body))

    @staticmethod
    def _rule_in(con: sqlite3.Connection, rule_id: str) -> RuleRecord | None:
        row = con.execute(f"SELECT {_RULE_COLUMNS} FROM catalog_rules WHERE id = ?", (rule_id,)).fetchone()
        if row is None:
            return None
        commands = [r[0] for r in con.execute(
            "SELECT command FROM catalog_rule_commands WHERE rule = ? ORDER BY command", (rule_id,))]
        return _rule(row, commands)

    async def rule(self, rule_id: str) -> RuleRecord | None:
        return await self._db.reader.run(lambda con: self._rule_in(con, rule_id))

    async def rules(self, *, kind: str | None = None, status: str | None = None, limit: int = 100) -> list[RuleRecord]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("kind", kind), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        params.append(max(1, min(limit, 10_000)))
        sql = f"SELECT {_RULE_COLUMNS} FROM catalog_rules{_where(where)} ORDER BY created_at DESC, id LIMIT ?"

        def body(con: sqlite3.Connection) -> list[RuleRecord]:
            out = []
            for row in con.execute(sql, params).fetchall():
                commands = [r[0] for r in con.execute(
                    "SELECT command FROM catalog_rule_commands WHERE rule = ? ORDER BY command", (row[0],))]
                out.append(_rule(row, commands))
            return out

        return await self._db.reader.run(body)

    # reads for the catalog's reports ---------------------------------------------------------------
    async def latest_identities(self, *, hall: str | None = None,
                                halls: Sequence[str] | None = None) -> list[tuple[str, str, int, dict[str, Any]]]:
        where: list[str] = ["type = 'device.status'", "data LIKE ?"]
        params: list[Any] = ['%"status":"identity"%']
        if not _hall_filter(where, params, hall, halls):
            return []
        sql = f"SELECT hall, device, agent_time, data FROM events{_where(where)} ORDER BY hall, device, seq"

        def body(con: sqlite3.Connection) -> list[tuple[str, str, int, dict[str, Any]]]:
            latest: dict[tuple[str, str], tuple[str, str, int, dict[str, Any]]] = {}
            for h, d, at, raw in con.execute(sql, params):
                data = _DECODER.decode(raw)
                if isinstance(data, dict) and data.get("status") == "identity":
                    latest[(h, d)] = (h, d, at, data)
            return [latest[k] for k in sorted(latest)]

        return await self._db.reader.run(body)

    async def event_counts(self, types: Sequence[str], *, time_from: int | None = None, time_to: int | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> dict[tuple[str, str], int]:
        if not types:
            return {}
        params: list[Any] = []
        if tuple(types) == ("game.error",):   # a literal, so SQLite may use the partial index events_errors
            where: list[str] = ["type = 'game.error'"]
        else:
            where = [f"type IN ({', '.join('?' for _ in types)})"]
            params.extend(types)
        if not _hall_filter(where, params, hall, halls):
            return {}
        for clause, value in (("agent_time >= ?", time_from), ("agent_time < ?", time_to)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT hall, device, COUNT(*) FROM events{_where(where)} GROUP BY hall, device"

        def body(con: sqlite3.Connection) -> dict[tuple[str, str], int]:
            return {(r[0], r[1]): r[2] for r in con.execute(sql, params)}

        return await self._db.reader.run(body)
