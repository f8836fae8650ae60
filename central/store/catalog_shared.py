"""The game catalog written once for both backends (:class:`central.repos.catalog.CatalogRepository`
over a :class:`~central.store.plans.PlanDatabase`): providers, games, placements, rules, and the reads
the catalog reports need (latest identities, event counts).

Only SQL both databases accept: no JSON functions (the identity events' data is decoded in Python),
``LIKE`` only as a pre-filter that Python re-checks. A write's reads lock by the dialect (PostgreSQL's
``FOR UPDATE`` / ``FOR SHARE``; SQLite's ``BEGIN IMMEDIATE`` holds the write lock already).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from central.repos.catalog import CatalogConflict, CatalogGame, Placement, Provider, RuleRecord

from .plans import Dialect, Plan, PlanDatabase, many, query
from .sqlhelpers import hall_scope, marks, where_clause

_DECODER = msgspec.json.Decoder()
_GAME_COLUMNS: Final = "id, provider, name, category, rtp_bp, status, min_bet, max_bet, sas_game_id, paytable_id"
_RULE_COLUMNS: Final = "id, kind, params, halls, created_by, created_at, status, updated_at"
_PLACEMENT_COLUMNS: Final = "hall, device, number, game, enabled"
_INSERT_RULE_COMMAND: Final = "INSERT INTO catalog_rule_commands (rule, command) VALUES (?, ?)"
_RULE_COMMANDS: Final = "SELECT command FROM catalog_rule_commands WHERE rule = ? ORDER BY command"


def _game(r: Sequence[Any]) -> CatalogGame:
    return CatalogGame(id=r[0], provider=r[1], name=r[2], category=r[3], rtp_bp=r[4], status=r[5], min_bet=r[6],
                       max_bet=r[7], sas_game_id=r[8], paytable_id=r[9])


def _placement(r: Sequence[Any]) -> Placement:
    return Placement(r[0], r[1], r[2], r[3], bool(r[4]))


def _rule(r: Sequence[Any], commands: list[str]) -> RuleRecord:
    return RuleRecord(id=r[0], kind=r[1], params=json.loads(r[2]),
                      halls=None if r[3] is None else tuple(json.loads(r[3])), created_by=r[4], created_at=r[5],
                      status=r[6], updated_at=r[7], commands=tuple(commands))


def _put_provider(d: Dialect, provider: Provider) -> Plan[Provider | None]:
    rows = yield query("SELECT id, name, status FROM catalog_providers WHERE id = ?" + d.for_update, provider.id)
    yield query("INSERT INTO catalog_providers (id, name, status) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status",
                provider.id, provider.name, provider.status)
    return Provider(*rows[0]) if rows else None


def _put_game(d: Dialect, game: CatalogGame) -> Plan[CatalogGame | None]:
    if not (yield query("SELECT 1 FROM catalog_providers WHERE id = ?" + d.for_share, game.provider)):
        raise CatalogConflict(f"provider {game.provider!r} is not in the catalog")
    rows = yield query(f"SELECT {_GAME_COLUMNS} FROM catalog_games WHERE id = ?" + d.for_update, game.id)
    yield query(f"INSERT INTO catalog_games ({_GAME_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, name = excluded.name,"
                " category = excluded.category, rtp_bp = excluded.rtp_bp, status = excluded.status,"
                " min_bet = excluded.min_bet, max_bet = excluded.max_bet, sas_game_id = excluded.sas_game_id,"
                " paytable_id = excluded.paytable_id",
                game.id, game.provider, game.name, game.category, game.rtp_bp, game.status, game.min_bet,
                game.max_bet, game.sas_game_id, game.paytable_id)
    return _game(rows[0]) if rows else None


def _replace_placements(d: Dialect, hall: str, device: str, placements: Sequence[Placement]) -> Plan[list[Placement]]:
    for p in placements:
        if not (yield query("SELECT 1 FROM catalog_games WHERE id = ?" + d.for_share, p.game)):
            raise CatalogConflict(f"game {p.game!r} is not in the catalog")
    before = [_placement(r) for r in (yield query(
        f"SELECT {_PLACEMENT_COLUMNS} FROM catalog_placements WHERE hall = ? AND device = ? ORDER BY number"
        + d.for_update, hall, device))]
    yield query("DELETE FROM catalog_placements WHERE hall = ? AND device = ?", hall, device)
    yield many(f"INSERT INTO catalog_placements ({_PLACEMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
               [(hall, device, p.number, p.game, int(p.enabled)) for p in placements])
    return before


def _add_rule(rule: RuleRecord) -> Plan[None]:
    yield query(f"INSERT INTO catalog_rules ({_RULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rule.id, rule.kind, json.dumps(rule.params, sort_keys=True),
                None if rule.halls is None else json.dumps(list(rule.halls)), rule.created_by, rule.created_at,
                rule.status, rule.updated_at)
    yield many(_INSERT_RULE_COMMAND, [(rule.id, c) for c in rule.commands])


def _add_rule_commands(rule_id: str, command_ids: Sequence[str]) -> Plan[None]:
    yield many(_INSERT_RULE_COMMAND, [(rule_id, c) for c in command_ids])


def _rule_in(rule_id: str, lock: str = "") -> Plan[RuleRecord | None]:
    rows = yield query(f"SELECT {_RULE_COLUMNS} FROM catalog_rules WHERE id = ?" + lock, rule_id)
    if not rows:
        return None
    return _rule(rows[0], [r[0] for r in (yield query(_RULE_COMMANDS, rule_id))])


def _set_rule_status(d: Dialect, rule_id: str, status: str, at: int) -> Plan[RuleRecord | None]:
    before = yield from _rule_in(rule_id, d.for_update)
    if before is not None:
        yield query("UPDATE catalog_rules SET status = ?, updated_at = ? WHERE id = ?", status, at, rule_id)
    return before


def _rules(sql: str, params: Sequence[Any]) -> Plan[list[RuleRecord]]:
    out = []
    for row in (yield query(sql, *params)):
        out.append(_rule(row, [r[0] for r in (yield query(_RULE_COMMANDS, row[0]))]))
    return out


class SharedCatalog:
    """:class:`~central.repos.catalog.CatalogRepository` on either database."""

    def __init__(self, db: PlanDatabase) -> None:
        self._db = db

    # providers -----------------------------------------------------------------------------------
    async def catalog_providers(self) -> list[Provider]:
        rows = await self._db.fetch("SELECT id, name, status FROM catalog_providers ORDER BY id")
        return [Provider(*r) for r in rows]

    async def put_provider(self, provider: Provider) -> Provider | None:
        return await self._db.write(_put_provider(self._db.dialect, provider))

    # games ---------------------------------------------------------------------------------------
    async def catalog_games(self) -> list[CatalogGame]:
        return [_game(r) for r in await self._db.fetch(f"SELECT {_GAME_COLUMNS} FROM catalog_games ORDER BY id")]

    async def put_game(self, game: CatalogGame) -> CatalogGame | None:
        return await self._db.write(_put_game(self._db.dialect, game))

    # placements ----------------------------------------------------------------------------------
    async def placements(self, *, hall: str | None = None, halls: Sequence[str] | None = None,
                         device: str | None = None) -> list[Placement]:
        where: list[str] = []
        params: list[Any] = []
        if not hall_scope(where, params, hall, halls):
            return []
        if device is not None:
            where.append("device = ?")
            params.append(device)
        sql = f"SELECT {_PLACEMENT_COLUMNS} FROM catalog_placements{where_clause(where)} ORDER BY hall, device, number"
        return [_placement(r) for r in await self._db.fetch(sql, *params)]

    async def replace_placements(self, hall: str, device: str, placements: Sequence[Placement]) -> list[Placement]:
        return await self._db.write(_replace_placements(self._db.dialect, hall, device, placements))

    # rules ---------------------------------------------------------------------------------------
    async def add_rule(self, rule: RuleRecord) -> None:
        await self._db.write(_add_rule(rule))

    async def add_rule_commands(self, rule_id: str, command_ids: Sequence[str]) -> None:
        if command_ids:
            await self._db.write(_add_rule_commands(rule_id, command_ids))

    async def set_rule_status(self, rule_id: str, status: str, at: int) -> RuleRecord | None:
        return await self._db.write(_set_rule_status(self._db.dialect, rule_id, status, at))

    async def rule(self, rule_id: str) -> RuleRecord | None:
        return await self._db.read(_rule_in(rule_id))

    async def rules(self, *, kind: str | None = None, status: str | None = None, limit: int = 100) -> list[RuleRecord]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("kind", kind), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        params.append(max(1, min(limit, 10_000)))
        sql = f"SELECT {_RULE_COLUMNS} FROM catalog_rules{where_clause(where)} ORDER BY created_at DESC, id LIMIT ?"
        return await self._db.read(_rules(sql, params))

    # reads for the catalog's reports ---------------------------------------------------------------
    async def latest_identities(self, *, hall: str | None = None,
                                halls: Sequence[str] | None = None) -> list[tuple[str, str, int, dict[str, Any]]]:
        # devices.identity_seq (schema 9, kept by ingest): one lookup per device on the events' key, not
        # a scan of every status event the halls ever sent (a daily clock check per machine, the game
        # selections, the errors: half a million rows a year for a 1,000-machine network)
        where: list[str] = ["d.identity_seq IS NOT NULL"]
        params: list[Any] = []
        if not hall_scope(where, params, hall, halls, column="d.hall"):
            return []
        sql = ("SELECT d.hall, d.id, e.agent_time, e.data FROM devices d JOIN events e"
               f" ON e.hall = d.hall AND e.seq = d.identity_seq{where_clause(where)} ORDER BY d.hall, d.id")
        out = []
        for h, d, at, raw in await self._db.fetch(sql, *params):
            data = _DECODER.decode(raw)
            if isinstance(data, dict) and data.get("status") == "identity":
                out.append((h, d, at, data))
        return out

    async def event_counts(self, types: Sequence[str], *, time_from: int | None = None, time_to: int | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> dict[tuple[str, str], int]:
        if not types:
            return {}
        params: list[Any] = []
        if tuple(types) == ("game.error",):   # a literal, so the database may use the partial index events_errors
            where: list[str] = ["type = 'game.error'"]
        else:
            where = [f"type IN ({marks(types)})"]
            params.extend(types)
        if not hall_scope(where, params, hall, halls):
            return {}
        for clause, value in (("agent_time >= ?", time_from), ("agent_time < ?", time_to)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT hall, device, COUNT(*) FROM events{where_clause(where)} GROUP BY hall, device"
        return {(r[0], r[1]): r[2] for r in await self._db.fetch(sql, *params)}
