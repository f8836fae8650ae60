"""Reports that need the game catalog: GGR by provider, the provider report, and actual hold against
theoretical RTP with anomalies flagged.

Money comes from the rollups per (hall, device, SAS game number); each cell is mapped to a catalog
game — and so to a provider — by the device's placements, else by matching the game number's
detected identity (see :func:`central.catalog.game_map`). A cell no catalog game accounts for (an
unplaced, unmatched game, or money outside games such as bills and tickets) stays under the provider
``unassigned``, so provider totals always add up to the device totals.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any, Final, Protocol

from aiohttp import web

from central import catalog as cat
from central.repos import HasCatalog, HasDevices, HasHalls, HasReports
from central.repos.reports import GgrRow, RollupCell
from protocols.sync.gamingday import DayRule

from . import days as hall_days
from . import params as p
from .catalog import CellGames, World, _device_games, cell_games, load_world
from .context import ApiContext, Handler, json_response, scope
from .openapi_parts import _WITH_400, _param, _ref

HOLD_GROUP_BY: Final = ("game", "device")


def _days(request: web.Request) -> tuple[dt.date | None, dt.date | None]:
    day_from, day_to = p.date(request.query, "from"), p.date(request.query, "to")
    if day_from is not None and day_to is not None and day_from > day_to:
        raise p.bad_request(f"from ({day_from}) is after to ({day_to})")
    return day_from, day_to


def _provider_of(world: World, cell: RollupCell) -> tuple[cat.CatalogGame | None, str]:
    game = world.gmap.get(cell.hall, cell.device, cell.game) if cell.game else None
    return game, (cat.UNASSIGNED if game is None else game.provider)


class ProviderSource(HasCatalog, HasReports, Protocol):
    """What :func:`ggr_by_provider` reads: the placed cells and the catalog (:func:`cell_games`)."""


async def ggr_by_provider(store: ProviderSource, *, day_from: dt.date | None, day_to: dt.date | None, hall: str | None,
                          halls: Sequence[str] | None) -> list[GgrRow]:
    """``GET /reports/ggr?group_by=provider``: the rollups summed per provider (``unassigned`` for the rest)."""
    cells = await store.reports.placed_cells(day_from=day_from, day_to=day_to, hall=hall, halls=halls)
    if not cells:
        return []
    games = await cell_games(store, cells, hall, halls)
    sums: dict[str, list[int]] = {}
    for cell in cells:
        game = games.game(cell)
        provider = cat.UNASSIGNED if game is None else game.provider
        acc = sums.get(provider)
        if acc is None:
            acc = sums[provider] = [0, 0, 0, 0, 0]
        acc[0] += cell.bets
        acc[1] += cell.wins
        acc[2] += cell.rounds
        acc[3] += cell.cash_in
        acc[4] += cell.cash_out
    return [GgrRow(k, *_money(sums[k])) for k in sorted(sums)]


@dataclasses.dataclass(slots=True)
class _ProviderHall:
    games: set[str] = dataclasses.field(default_factory=set)
    devices: set[str] = dataclasses.field(default_factory=set)
    active: set[str] = dataclasses.field(default_factory=set)
    bets: int = 0
    wins: int = 0
    rounds: int = 0
    errors: int = 0
    unavailable: int = 0
    offline: set[str] = dataclasses.field(default_factory=set)


class Needs(HasCatalog, HasDevices, HasHalls, HasReports, Protocol):
    """The repositories this feature uses (the app passes :class:`central.repos.Repositories`)."""


def handlers(ctx: ApiContext, store: Needs) -> dict[str, Handler]:

    async def providers_report(request: web.Request) -> web.Response:
        day_from, day_to = _days(request)
        hall, halls = scope(request)
        cells = await store.reports.placed_cells(day_from=day_from, day_to=day_to, hall=hall, halls=halls)
        world = await load_world(store, hall, halls)   # after the cells: their placed games are in it
        games = CellGames(world.by_id, world.gmap)
        errors: dict[tuple[str, str], int] = {}
        by_rule: dict[DayRule, list[str]] = {}
        for member, rule in hall_days.rules_in_scope(await store.halls.halls(), hall, halls).items():
            by_rule.setdefault(rule, []).append(member)
        for rule, members in by_rule.items():   # each hall's own gaming days, as the rollups count them
            time_from = None if day_from is None else rule.bounds(day_from)[0]
            time_to = None if day_to is None else rule.bounds(day_to)[1]
            errors.update(await store.catalog.event_counts(("game.error",), time_from=time_from, time_to=time_to,
                                                   hall=hall, halls=members))
        acc: dict[tuple[str, str], _ProviderHall] = {}
        on_device: dict[tuple[str, str], set[str]] = {}
        for h, d in world.device_keys():
            record = world.devices.get((h, d))
            offline = record is not None and (record.online is False or not record.enabled)
            for row in _device_games(world, h, d):
                if row["game"] is None:
                    continue
                a = acc.setdefault((row["provider"], h), _ProviderHall())
                a.games.add(row["game"])
                a.devices.add(d)
                a.unavailable += int(not row["available"])
                if offline:
                    a.offline.add(d)
                on_device.setdefault((h, d), set()).add(row["provider"])
        for cell in cells:
            game = games.game(cell)
            provider = cat.UNASSIGNED if game is None else game.provider
            a = acc.setdefault((provider, cell.hall), _ProviderHall())
            a.bets += cell.bets
            a.wins += cell.wins
            a.rounds += cell.rounds
            if game is not None and cell.rounds > 0:
                a.active.add(game.id)
        for (h, d), count in errors.items():
            for provider in on_device.get((h, d)) or {cat.UNASSIGNED}:
                acc.setdefault((provider, h), _ProviderHall()).errors += count
        rows = []
        for (provider, h), a in sorted(acc.items()):
            known = world.providers.get(provider)
            rows.append({"provider": provider, "name": None if known is None else known.name, "hall": h,
                         "games_connected": len(a.games), "devices": len(a.devices), "active_games": len(a.active),
                         "bets": a.bets, "payouts": a.wins, "ggr": a.bets - a.wins, "rounds": a.rounds,
                         "errors": a.errors, "unavailable_games": a.unavailable, "offline_devices": len(a.offline)})
        return json_response({"currency": ctx.currency, "from": None if day_from is None else day_from.isoformat(),
                              "to": None if day_to is None else day_to.isoformat(), "rows": rows})

    async def hold_report(request: web.Request) -> web.Response:
        day_from, day_to = _days(request)
        group_by = p.choice(request.query, "group_by", HOLD_GROUP_BY, default="game")
        hall, halls = scope(request)
        groups: dict[tuple[str, ...], list[int]] = {}
        games: dict[tuple[str, ...], cat.CatalogGame | None] = {}

        def add(key: tuple[str, ...], game: cat.CatalogGame | None, bets: int, wins: int, rounds: int) -> None:
            sums = groups.setdefault(key, [0, 0, 0])
            sums[0] += bets
            sums[1] += wins
            sums[2] += rounds
            games[key] = game

        if group_by == "game":   # per catalog game: the placed cells, a few rows per hall and game
            placed = await store.reports.placed_cells(day_from=day_from, day_to=day_to, hall=hall, halls=halls)
            of = await cell_games(store, placed, hall, halls)
            for pc in placed:
                if pc.bets or pc.wins or pc.rounds:   # cash only (bills, tickets): no play to judge
                    game = of.game(pc)
                    add((cat.UNASSIGNED if game is None else game.id,), game, pc.bets, pc.wins, pc.rounds)
        else:
            cells = await store.reports.rollup_cells(day_from=day_from, day_to=day_to, hall=hall, halls=halls)
            world = await load_world(store, hall, halls, with_devices=False)
            for cell in cells:
                if cell.bets or cell.wins or cell.rounds:
                    add((cell.hall, cell.device, cell.game), _provider_of(world, cell)[0], cell.bets, cell.wins,
                        cell.rounds)
        rows = []
        for key in sorted(groups):
            bets, wins, rounds = groups[key]
            game = games[key]
            check = cat.check_hold(bets, wins, rounds, None if game is None else game.rtp_bp)
            row: dict[str, Any] = {"key": key[0] if group_by == "game" else key[1]}
            if group_by == "device":
                row |= {"hall": key[0], "device": key[1], "number": key[2]}
            row |= {"game": None if game is None else game.id, "provider": cat.UNASSIGNED if game is None
                    else game.provider, "bets": bets, "wins": wins, "ggr": bets - wins, "rounds": rounds,
                    "rtp_bp": None if game is None else game.rtp_bp, "theoretical_hold_bp": check.theoretical_bp,
                    "actual_hold_bp": check.actual_bp, "deviation_bp": check.deviation_bp, "band_bp": check.band_bp,
                    "anomaly": check.anomaly, "reason": check.reason}
            rows.append(row)
        return json_response({"currency": ctx.currency, "group_by": group_by,
                              "thresholds": {"min_rounds": cat.HOLD_MIN_ROUNDS, "sigma_bp": cat.HOLD_SIGMA_BP,
                                             "z": cat.HOLD_Z},
                              "rows": rows})

    return {"GET /reports/providers": providers_report, "GET /reports/hold": hold_report}


# --- OpenAPI ------------------------------------------------------------------------------------
_DAY_PARAMS = [
    {"name": "from", "in": "query", "required": False, "description": "First day (inclusive, UTC).",
     "schema": {"type": "string", "format": "date"}},
    {"name": "to", "in": "query", "required": False, "description": "Last day (inclusive, UTC).",
     "schema": {"type": "string", "format": "date"}},
    _param("hall"),
]
_MONEY = {"type": "integer", "format": "int64", "description": "Minor units of the report's currency."}
_BP = {"type": "integer", "nullable": True, "description": "Basis points of the bets."}

PATHS: Final[dict[str, Any]] = {
    "/reports/providers": {"get": {
        "operationId": "providerReport",
        "summary": "Per provider and hall: games connected, active games, bets, payouts, GGR, errors, unavailability.",
        "description": (
            "`games_connected`: distinct catalog games of the provider placed or detected on the hall's devices "
            "(`devices` of them); `active_games`: those with rounds in the period; `errors`: `game.error` events "
            "in the period on devices carrying the provider's games (a device with several providers' games "
            "counts for each, so errors do not add up across providers); `unavailable_games`: device games of "
            "the provider not available to players now (disabled, or the device disabled or offline); "
            "`offline_devices`: devices with its games that are offline or disabled. Money not accounted for by "
            "a catalog game is under `unassigned`."),
        "parameters": _DAY_PARAMS,
        "responses": {"200": {"description": "The report.", "content": {"application/json": {
            "schema": _ref("ProviderReport")}}}, **_WITH_400}}},
    "/reports/hold": {"get": {
        "operationId": "holdReport",
        "summary": "Actual hold (GGR / bets) against the theoretical hold (10000 − RTP) with anomalies flagged.",
        "description": (
            f"An anomaly is an actual hold outside theoretical ± band, band = ceil(z · sigma / sqrt(rounds)) "
            f"basis points with z = {cat.HOLD_Z} and sigma = {cat.HOLD_SIGMA_BP} bp (a round's return varies "
            f"about 10 bets); never flagged below {cat.HOLD_MIN_ROUNDS} rounds. `group_by=game` sums per "
            "catalog game (`unassigned` has no theoretical hold); `group_by=device` gives one row per device "
            "game number."),
        "parameters": [{"name": "group_by", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": list(HOLD_GROUP_BY), "default": "game"}},
                       *_DAY_PARAMS],
        "responses": {"200": {"description": "The report.", "content": {"application/json": {
            "schema": _ref("HoldReport")}}}, **_WITH_400}}},
}

SCHEMAS: Final[dict[str, Any]] = {
    "ProviderReport": {"type": "object", "properties": {
        "currency": {"type": "string"}, "from": {"type": "string", "nullable": True},
        "to": {"type": "string", "nullable": True},
        "rows": {"type": "array", "items": {"type": "object", "properties": {
            "provider": {"type": "string"}, "name": {"type": "string", "nullable": True}, "hall": {"type": "string"},
            "games_connected": {"type": "integer"}, "devices": {"type": "integer"},
            "active_games": {"type": "integer"}, "bets": _MONEY, "payouts": _MONEY, "ggr": _MONEY,
            "rounds": {"type": "integer"}, "errors": {"type": "integer"}, "unavailable_games": {"type": "integer"},
            "offline_devices": {"type": "integer"}}}}}},
    "HoldReport": {"type": "object", "properties": {
        "currency": {"type": "string"}, "group_by": {"type": "string", "enum": list(HOLD_GROUP_BY)},
        "thresholds": {"type": "object", "properties": {"min_rounds": {"type": "integer"},
                                                        "sigma_bp": {"type": "integer"}, "z": {"type": "integer"}}},
        "rows": {"type": "array", "items": {"type": "object", "properties": {
            "key": {"type": "string"}, "hall": {"type": "string"}, "device": {"type": "string"},
            "number": {"type": "string", "description": "SAS game number (group_by=device)."},
            "game": {"type": "string", "nullable": True}, "provider": {"type": "string"},
            "bets": _MONEY, "wins": _MONEY, "ggr": _MONEY, "rounds": {"type": "integer"},
            "rtp_bp": _BP, "theoretical_hold_bp": _BP, "actual_hold_bp": _BP, "deviation_bp": _BP, "band_bp": _BP,
            "anomaly": {"type": "boolean"}, "reason": {"type": "string"}}}}}},
}


def _money(acc: list[int]) -> tuple[int, int, int, int, int]:
    return acc[0], acc[1], acc[2], acc[3], acc[4]
