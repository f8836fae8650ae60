"""The game catalog over HTTP: providers, games, where each game is (placements), and per device the
desired configuration against what the machine reports, with the differences listed.

Providers and games are network-wide, so only a key without a hall scope may change them (a
hall-scoped operator reads them); placements belong to a hall, and a hall-scoped operator edits only
its halls. Every change is written to the audit log with its before and after.
The matching and difference rules live in :mod:`central.catalog` (pure, unit-tested).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, Final, Protocol

from aiohttp import web

from central import catalog as cat
from central.catalog import CatalogGame, Detected, GameMap, Placement, Provider
from central.repos import HasAudit, HasCatalog, HasDevices, HasHalls
from central.repos.audit import AuditEntry
from central.repos.catalog import CatalogConflict
from central.repos.devices import DeviceRecord
from central.repos.reports import PlacedCell
from protocols.sync.fields import HALL_RE, ID_RE, INT64_MAX

from . import params as p
from .context import ApiContext, Handler, api_key, json_body, json_response, require_hall_in_scope, scope
from .openapi_parts import _ERRORS, _WITH_400, _param, _ref
from .params import ApiError

MAX_NAME: Final = 200
MAX_PLACEMENTS: Final = 9999
_SAS_ID_MAX: Final = 16


# --- loading what the catalog's views need ------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class World:
    """The catalog, the desired and detected configuration of the devices in scope, and the map of
    (hall, device, game number) → catalog game built from them."""

    providers: dict[str, Provider]
    games: list[CatalogGame]
    by_id: dict[str, CatalogGame]
    placements: list[Placement]
    detected: dict[tuple[str, str], Detected]
    devices: dict[tuple[str, str], DeviceRecord]
    gmap: GameMap

    def device_keys(self) -> list[tuple[str, str]]:
        """Every (hall, device) known from events, placements or an identity, sorted."""
        keys = set(self.devices) | set(self.detected) | {(pl.hall, pl.device) for pl in self.placements}
        return sorted(keys)

    def placements_of(self, hall: str, device: str) -> list[Placement]:
        return self._by_device.get((hall, device), [])

    @functools.cached_property
    def _by_device(self) -> dict[tuple[str, str], list[Placement]]:
        """Placements per device, built once: a scan per device cost 140 ms per request at 1,000
        machines (bench/reports.py)."""
        out: dict[tuple[str, str], list[Placement]] = {}
        for pl in self.placements:
            out.setdefault((pl.hall, pl.device), []).append(pl)
        return out


class WorldSource(HasCatalog, HasDevices, Protocol):
    """What :func:`load_world` reads: the catalog and the devices."""


async def detected_games(store: HasCatalog, hall: str | None,
                         halls: Sequence[str] | None) -> dict[tuple[str, str], Detected]:
    """Each device's newest identity that parses, by (hall, device)."""
    detected: dict[tuple[str, str], Detected] = {}
    for h, d, at, data in await store.catalog.latest_identities(hall=hall, halls=halls):
        parsed = cat.parse_identity(h, d, at, data)
        if parsed is not None:
            detected[(h, d)] = parsed
    return detected


async def load_world(store: WorldSource, hall: str | None, halls: Sequence[str] | None, *,
                     with_devices: bool = True) -> World:
    """``with_devices=False`` leaves ``devices`` empty: the money reports need only the game map, and
    reading every device record is a third of their cost on a 1,000-machine network."""
    providers = {pr.id: pr for pr in await store.catalog.catalog_providers()}
    games = await store.catalog.catalog_games()
    placements = await store.catalog.placements(hall=hall, halls=halls)
    detected = await detected_games(store, hall, halls)
    devices = {(r.hall, r.id): r for r in await store.devices.devices(hall=hall, halls=halls)} if with_devices else {}
    return World(providers, games, {g.id: g for g in games}, placements, detected, devices,
                 cat.game_map(games, placements, detected.values()))


class CellGames:
    """The catalog game of each :class:`~central.repos.reports.PlacedCell`: by its placement, else by
    the detected identity of its device (:func:`central.catalog.game_map`'s order), else none."""

    def __init__(self, by_id: dict[str, CatalogGame], detected: GameMap) -> None:
        self.by_id = by_id
        self._detected = detected

    def game(self, cell: PlacedCell) -> CatalogGame | None:
        if cell.game is not None:
            return self.by_id.get(cell.game)
        if cell.device is not None:
            return self._detected.get(cell.hall, cell.device, cell.number)
        return None


async def cell_games(store: HasCatalog, cells: Sequence[PlacedCell], hall: str | None,
                     halls: Sequence[str] | None) -> CellGames:
    """Read after the cells, so a game a placement named in them is in the catalog read here. The
    identities (every device's newest) are read only when some money is on a number no placement
    names."""
    games = await store.catalog.catalog_games()
    detected = GameMap()
    if any(c.device is not None for c in cells):
        detected = cat.game_map(games, (), (await detected_games(store, hall, halls)).values())
    return CellGames({g.id: g for g in games}, detected)


async def active_limits(store: HasCatalog) -> list[cat.LimitRule]:
    """The max-bet rules in force (see :mod:`central.api.rules`)."""
    out = []
    for rule in await store.catalog.rules(kind="max_bet", status="active", limit=10_000):
        out.append(cat.LimitRule(id=rule.id, max_bet=int(rule.params["max_bet"]), halls=rule.halls,
                                 provider=rule.params.get("provider"), game=rule.params.get("game")))
    return out


# --- validation ---------------------------------------------------------------------------------
def _only(body: dict[str, Any], allowed: Sequence[str], what: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise p.bad_request(f"{unknown[0]} is not a field of {what} ({', '.join(allowed)})")


def ident(value: Any, name: str) -> str:
    if not isinstance(value, str) or ID_RE.match(value) is None:
        raise p.bad_request(f"{name} must be an ID ([A-Za-z0-9_.:-]{{1,64}}), not {value!r}")
    return value


def _name(value: Any, name: str, *, max_len: int = MAX_NAME) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise p.bad_request(f"{name} must be a non-empty string of at most {max_len} characters")
    return value.strip()


def _status(value: Any) -> str:
    if value not in cat.STATUSES:
        raise p.bad_request(f"status must be one of {', '.join(cat.STATUSES)}, not {value!r}")
    return str(value)


def integer(value: Any, name: str, low: int = 0, high: int = INT64_MAX) -> int:
    if type(value) is not int or not low <= value <= high:
        raise p.bad_request(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value


def _sas_id(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > _SAS_ID_MAX or not value.isascii() or not value.isprintable():
        raise p.bad_request(f"{name} must be printable ASCII of at most {_SAS_ID_MAX} characters")
    return value.strip()


def _same_id(body: dict[str, Any], path_id: str) -> None:
    """A body read back from GET carries its ``id``: accepted when it is the path's, else 400."""
    if "id" in body:
        if body.pop("id") != path_id:
            raise p.bad_request(f"id in the body differs from the path's {path_id!r}")


def _not_scoped(request: web.Request) -> None:
    if api_key(request).halls is not None:
        raise ApiError(403, "forbidden", "the catalog is network-wide: a hall-scoped key may not change it")


def _not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def _game(game_id: str, body: dict[str, Any]) -> CatalogGame:
    """A ``PUT /catalog/games/{id}`` body as a checked game (400 naming the first bad field)."""
    _same_id(body, game_id)
    fields = ("provider", "name", "category", "rtp_bp", "status", "min_bet", "max_bet", "sas_game_id",
              "paytable_id")
    _only(body, fields, "a catalog game")
    game = CatalogGame(
        id=game_id, provider=ident(body.get("provider"), "provider"), name=_name(body.get("name"), "name"),
        category=_name(body.get("category"), "category", max_len=64),
        rtp_bp=integer(body.get("rtp_bp"), "rtp_bp (basis points: 9612 = 96.12 %)", 0, 10_000),
        status=_status(body.get("status", "active")),
        min_bet=integer(body.get("min_bet"), "min_bet (minor units)"),
        max_bet=integer(body.get("max_bet"), "max_bet (minor units)"),
        sas_game_id=_sas_id(body.get("sas_game_id"), "sas_game_id"),
        paytable_id=_sas_id(body.get("paytable_id"), "paytable_id"))
    if game.min_bet > game.max_bet:
        raise p.bad_request(f"min_bet ({game.min_bet}) is greater than max_bet ({game.max_bet})")
    return game


def _placements(hall: str, device: str, body: dict[str, Any]) -> list[Placement]:
    """A ``PUT /catalog/placements/{hall}/{device}`` body as checked placements (400 naming the item)."""
    _only(body, ("games",), "a device's placements")
    raw = body.get("games")
    if not isinstance(raw, list) or len(raw) > MAX_PLACEMENTS:
        raise p.bad_request(f"games must be a list of at most {MAX_PLACEMENTS} {{number, game, enabled}}")
    placements: list[Placement] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise p.bad_request(f"games[{i}] must be an object {{number, game, enabled}}")
        _only(item, ("number", "game", "enabled"), f"games[{i}]")
        enabled = item.get("enabled", True)
        if type(enabled) is not bool:
            raise p.bad_request(f"games[{i}].enabled must be true or false")
        placements.append(Placement(hall, device, integer(item.get("number"), f"games[{i}].number", 1, 9999),
                                    ident(item.get("game"), f"games[{i}].game"), enabled))
    numbers = [pl.number for pl in placements]
    if len(set(numbers)) != len(numbers):
        raise p.bad_request("games: each game number may appear once")
    return placements


class Needs(HasAudit, HasCatalog, HasDevices, HasHalls, Protocol):
    """The repositories this feature uses (the app passes :class:`central.repos.Repositories`)."""


# --- handlers -----------------------------------------------------------------------------------
def handlers(ctx: ApiContext, store: Needs) -> dict[str, Handler]:

    async def audit(request: web.Request, action: str, target: str, before: Any, after: Any) -> None:
        await store.audit.add_audit(AuditEntry(time=ctx.clock(), actor=api_key(request).id, action=action,
                                               target=target,
                                         before=before, after=after))

    async def list_providers(request: web.Request) -> web.Response:
        return json_response({"rows": [pr.as_dict() for pr in await store.catalog.catalog_providers()]})

    async def put_provider(request: web.Request) -> web.Response:
        _not_scoped(request)
        provider_id = ident(request.match_info["id"], "provider id")
        body = await json_body(request)
        _same_id(body, provider_id)
        _only(body, ("name", "status"), "a provider")
        provider = Provider(id=provider_id, name=_name(body.get("name"), "name"),
                            status=_status(body.get("status", "active")))
        before = await store.catalog.put_provider(provider)
        if before != provider:
            await audit(request, "catalog.provider." + ("create" if before is None else "update"),
                        f"catalog/provider/{provider_id}", None if before is None else before.as_dict(),
                        provider.as_dict())
        return json_response(provider.as_dict(), status=201 if before is None else 200)

    async def list_games(request: web.Request) -> web.Response:
        q = request.query
        provider = p.text(q, "provider")
        status = p.choice(q, "status", cat.STATUSES)
        rows = [g.as_dict() for g in await store.catalog.catalog_games()
                if (provider is None or g.provider == provider) and (status is None or g.status == status)]
        return json_response({"rows": rows})

    async def get_game(request: web.Request) -> web.Response:
        game_id = request.match_info["id"]
        game = next((g for g in await store.catalog.catalog_games() if g.id == game_id), None)
        if game is None:
            raise _not_found(f"no catalog game {game_id!r}")
        return json_response(game.as_dict())

    async def put_game(request: web.Request) -> web.Response:
        _not_scoped(request)
        game_id = ident(request.match_info["id"], "game id")
        game = _game(game_id, await json_body(request))
        try:
            before = await store.catalog.put_game(game)
        except CatalogConflict as exc:
            raise p.bad_request(str(exc)) from None
        if before != game:
            await audit(request, "catalog.game." + ("create" if before is None else "update"),
                        f"catalog/game/{game_id}", None if before is None else before.as_dict(), game.as_dict())
        return json_response(game.as_dict(), status=201 if before is None else 200)

    async def put_placements(request: web.Request) -> web.Response:
        hall = request.match_info["hall"]
        if HALL_RE.match(hall) is None:
            raise p.bad_request(f"hall must be a hall ID ([A-Za-z0-9_-]{{1,64}}), not {hall!r}")
        require_hall_in_scope(request, hall)
        device = ident(request.match_info["device"], "device")
        placements = _placements(hall, device, await json_body(request))
        if await store.halls.get_hall(hall) is None:
            raise p.bad_request(f"hall {hall!r} is not registered")
        try:
            before = await store.catalog.replace_placements(hall, device, sorted(placements, key=lambda x: x.number))
        except CatalogConflict as exc:
            raise p.bad_request(str(exc)) from None
        after = [pl.as_dict() for pl in sorted(placements, key=lambda x: x.number)]
        if [pl.as_dict() for pl in before] != after:
            await audit(request, "catalog.placements.update", f"hall/{hall}/device/{device}",
                        [pl.as_dict() for pl in before] or None, after or None)
        return json_response({"hall": hall, "device": device, "games": after})

    async def availability(request: web.Request) -> web.Response:
        hall, halls = scope(request)
        world = await load_world(store, hall, halls)
        devices = []
        per_hall: dict[tuple[str, str], dict[str, Any]] = {}
        for h, d in world.device_keys():
            rows = _device_games(world, h, d)
            if not rows:
                continue
            online = _online(world, h, d)
            devices.append({"hall": h, "device": d, "online": online, "games": rows})
            for row in rows:
                if row["game"] is None:
                    continue
                agg = per_hall.setdefault((h, row["game"]), {
                    "hall": h, "game": row["game"], "provider": row["provider"], "devices": 0, "available": 0})
                agg["devices"] += 1
                agg["available"] += int(row["available"])
        return json_response({"halls": [per_hall[k] for k in sorted(per_hall)], "devices": devices})

    async def device_config(request: web.Request) -> web.Response:
        hall, halls = scope(request)
        device = p.text(request.query, "device")
        world = await load_world(store, hall, halls)
        limits = await active_limits(store)
        rows = []
        for h, d in world.device_keys():
            if device is not None and d != device:
                continue
            placed = world.placements_of(h, d)
            seen = world.detected.get((h, d))
            diffs = cat.differences(placed, seen, world.games, limits, hall=h)
            rows.append({
                "hall": h, "device": d, "online": _online(world, h, d),
                "desired": [pl.as_dict() for pl in placed],
                "detected": None if seen is None else {
                    "at": p.rfc3339(seen.at), "at_us": seen.at, "serial": seen.serial,
                    "enabled_games": sorted(seen.enabled_games),
                    "games": [{**g.as_dict(), "catalog_game": _gid(world.gmap.get(h, d, str(g.number)))}
                              for g in seen.games]},
                "differences": [x.as_dict() for x in diffs],
                "in_sync": not diffs,
            })
        return json_response({"rows": rows})

    return {
        "GET /catalog/providers": list_providers,
        "PUT /catalog/providers/{id}": put_provider,
        "GET /catalog/games": list_games,
        "GET /catalog/games/{id}": get_game,
        "PUT /catalog/games/{id}": put_game,
        "PUT /catalog/placements/{hall}/{device}": put_placements,
        "GET /catalog/availability": availability,
        "GET /catalog/devices": device_config,
    }


def _gid(game: CatalogGame | None) -> str | None:
    return None if game is None else game.id


def _online(world: World, hall: str, device: str) -> bool | None:
    record = world.devices.get((hall, device))
    return None if record is None else record.online


def _device_games(world: World, hall: str, device: str) -> list[dict[str, Any]]:
    """Per game number of a device: the catalog game, desired and detected enablement, and whether it
    is available to players now (reported and enabled by the device — or, before the device reported
    its games, placed enabled — on a device that is enabled and not offline)."""
    placed = {pl.number: pl for pl in world.placements_of(hall, device)}
    seen = world.detected.get((hall, device))
    numbers = set(placed) | ({g.number for g in seen.games} if seen is not None else set())
    record = world.devices.get((hall, device))
    device_up = record is None or (record.enabled and record.online is not False)
    out = []
    for n in sorted(numbers):
        game = world.gmap.get(hall, device, str(n))
        pl = placed.get(n)
        detected_on = None if seen is None or seen.game(n) is None else n in seen.enabled_games
        if seen is not None:
            on = bool(detected_on)  # the machine's word wins; a game it does not report is not there
        else:
            on = pl is not None and pl.enabled
        out.append({"number": n, "game": _gid(game), "provider": None if game is None else game.provider,
                    "desired_enabled": None if pl is None else pl.enabled, "detected_enabled": detected_on,
                    "available": bool(on and device_up)})
    return out


# --- OpenAPI ------------------------------------------------------------------------------------
_404 = {"404": {"description": "Not found (`not_found`).",
                "content": {"application/json": {"schema": _ref("Error")}}}}
_ID_PATH = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]

PATHS: Final[dict[str, Any]] = {
    "/catalog/providers": {"get": {
        "operationId": "listProviders", "summary": "Game providers of the catalog.",
        "responses": {"200": {"description": "Providers by id.", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"rows": {"type": "array", "items": _ref("Provider")}}}}}},
            **_ERRORS}}},
    "/catalog/providers/{id}": {"put": {
        "operationId": "putProvider", "summary": "Create or replace a provider (audited).",
        "description": "Network-wide: a hall-scoped key gets 403. 201 when created, 200 when replaced.",
        "parameters": _ID_PATH,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ProviderRequest")}}},
        "responses": {"200": {"description": "Replaced.", "content": {"application/json": {
            "schema": _ref("Provider")}}}, "201": {"description": "Created.", "content": {
                "application/json": {"schema": _ref("Provider")}}}, **_WITH_400}}},
    "/catalog/games": {"get": {
        "operationId": "listCatalogGames", "summary": "Games of the catalog.",
        "parameters": [{"name": "provider", "in": "query", "required": False, "schema": {"type": "string"}},
                       {"name": "status", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": list(cat.STATUSES)}}],
        "responses": {"200": {"description": "Games by id.", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"rows": {"type": "array", "items": _ref("CatalogGame")}}}}}},
            **_WITH_400}}},
    "/catalog/games/{id}": {
        "get": {"operationId": "getCatalogGame", "summary": "One catalog game.", "parameters": _ID_PATH,
                "responses": {"200": {"description": "The game.", "content": {"application/json": {
                    "schema": _ref("CatalogGame")}}}, **_ERRORS, **_404}},
        "put": {"operationId": "putCatalogGame", "summary": "Create or replace a catalog game (audited).",
                "description": ("The provider must exist; `rtp_bp` is 0..10000 basis points; bets are minor "
                                "units with `min_bet` ≤ `max_bet`. A hall-scoped key gets 403."),
                "parameters": _ID_PATH,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("CatalogGameRequest")}}},
                "responses": {"200": {"description": "Replaced.", "content": {"application/json": {
                    "schema": _ref("CatalogGame")}}}, "201": {"description": "Created.", "content": {
                        "application/json": {"schema": _ref("CatalogGame")}}}, **_WITH_400}},
    },
    "/catalog/placements/{hall}/{device}": {"put": {
        "operationId": "putPlacements",
        "summary": "Replace a device's desired configuration: which catalog game is at which SAS game number.",
        "description": "Audited. The hall must be registered and inside the key's scope; every game must exist.",
        "parameters": [{"name": "hall", "in": "path", "required": True, "schema": {"type": "string"}},
                       {"name": "device", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("PlacementsRequest")}}},
        "responses": {"200": {"description": "The device's placements now.", "content": {"application/json": {
            "schema": _ref("Placements")}}}, **_WITH_400}}},
    "/catalog/availability": {"get": {
        "operationId": "catalogAvailability", "summary": "Which catalog games are available, by hall and by device.",
        "description": ("A game is available on a device when the device reports it enabled (or, before the "
                        "device reported its games, when it is placed enabled) and the device is neither "
                        "disabled nor offline. `halls` counts devices carrying each game and how many offer it."),
        "parameters": [_param("hall")],
        "responses": {"200": {"description": "Availability.", "content": {"application/json": {
            "schema": _ref("Availability")}}}, **_WITH_400}}},
    "/catalog/devices": {"get": {
        "operationId": "catalogDevices",
        "summary": "Per device: desired (placements) versus detected (LP 1F/53/56 identity) configuration.",
        "description": ("`differences` lists each mismatch with a `kind`: " + ", ".join(cat.DIFFERENCE_KINDS)
                        + ". Max-bet limits of active `max_bet` rules are checked against the detected "
                        "max bet × denomination (minor units)."),
        "parameters": [_param("hall"), {"name": "device", "in": "query", "required": False,
                                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "Devices by hall and id.", "content": {"application/json": {
            "schema": _ref("DeviceConfigList")}}}, **_WITH_400}}},
}

_ID = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
_INT = {"type": "integer", "format": "int64", "minimum": 0}
_STATUS = {"type": "string", "enum": list(cat.STATUSES), "default": "active"}
_GAME_PROPS: dict[str, Any] = {
    "provider": _ID, "name": {"type": "string", "maxLength": MAX_NAME},
    "category": {"type": "string", "maxLength": 64},
    "rtp_bp": {"type": "integer", "minimum": 0, "maximum": 10000,
               "description": "Theoretical RTP in basis points (9612 = 96.12 %)."},
    "status": _STATUS, "min_bet": {**_INT, "description": "Minor units per round."},
    "max_bet": {**_INT, "description": "Minor units per round; ≥ min_bet."},
    "sas_game_id": {"type": "string", "maxLength": _SAS_ID_MAX, "description": "As reported by LP 1F/53."},
    "paytable_id": {"type": "string", "maxLength": _SAS_ID_MAX, "description": "As reported by LP 1F/53."},
}
_PLACEMENT = {"type": "object", "required": ["number", "game"], "additionalProperties": False,
              "properties": {"number": {"type": "integer", "minimum": 1, "maximum": 9999}, "game": _ID,
                             "enabled": {"type": "boolean", "default": True}}}
_DIFF = {"type": "object", "properties": {
    "kind": {"type": "string", "enum": list(cat.DIFFERENCE_KINDS)},
    "number": {"type": "integer", "nullable": True}, "game": {"type": "string", "nullable": True},
    "detail": {"type": "string"}, "rule": {"type": "string"}}}

SCHEMAS: Final[dict[str, Any]] = {
    "Provider": {"type": "object", "required": ["id", "name", "status"],
                 "properties": {"id": _ID, "name": {"type": "string"}, "status": _STATUS}},
    "ProviderRequest": {"type": "object", "required": ["name"], "additionalProperties": False,
                        "properties": {"name": {"type": "string", "maxLength": MAX_NAME}, "status": _STATUS}},
    "CatalogGame": {"type": "object", "properties": {"id": _ID, **_GAME_PROPS}},
    "CatalogGameRequest": {"type": "object", "additionalProperties": False,
                           "required": ["provider", "name", "category", "rtp_bp", "min_bet", "max_bet"],
                           "properties": _GAME_PROPS},
    "PlacementsRequest": {"type": "object", "required": ["games"], "additionalProperties": False,
                          "properties": {"games": {"type": "array", "items": _PLACEMENT}}},
    "Placements": {"type": "object", "properties": {"hall": {"type": "string"}, "device": {"type": "string"},
                                                    "games": {"type": "array", "items": _PLACEMENT}}},
    "Availability": {"type": "object", "properties": {
        "halls": {"type": "array", "items": {"type": "object", "properties": {
            "hall": {"type": "string"}, "game": {"type": "string"}, "provider": {"type": "string"},
            "devices": {"type": "integer"}, "available": {"type": "integer"}}}},
        "devices": {"type": "array", "items": {"type": "object", "properties": {
            "hall": {"type": "string"}, "device": {"type": "string"}, "online": {"type": "boolean", "nullable": True},
            "games": {"type": "array", "items": {"type": "object", "properties": {
                "number": {"type": "integer"}, "game": {"type": "string", "nullable": True},
                "provider": {"type": "string", "nullable": True},
                "desired_enabled": {"type": "boolean", "nullable": True},
                "detected_enabled": {"type": "boolean", "nullable": True},
                "available": {"type": "boolean"}}}}}}}}},
    "DeviceConfigList": {"type": "object", "properties": {"rows": {"type": "array", "items": {
        "type": "object", "properties": {
            "hall": {"type": "string"}, "device": {"type": "string"}, "online": {"type": "boolean", "nullable": True},
            "desired": {"type": "array", "items": _PLACEMENT},
            "detected": {"type": "object", "nullable": True, "description": (
                "The latest identity: serial, enabled game numbers, and per game number the SAS game ID, "
                "paytable ID, denomination, max bet (credits and minor units) and the catalog game it maps to.")},
            "differences": {"type": "array", "items": _DIFF},
            "in_sync": {"type": "boolean"}}}}}},
}
