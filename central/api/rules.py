"""Network-wide rules: disable (or re-enable) a catalog game everywhere, and max-bet limits for all halls.

A rule turns into ordinary signed commands (:func:`central.api.issue.issue_command`), one per device
game, so each is applied at most once and answered by its hall; the rule's ``status`` aggregates
theirs. Kinds:

* ``disable_game`` / ``enable_game`` ``{"game": <catalog id>}``: every device in scope where the game is
  placed or detected (its SAS game number on that device) gets ``disable_game``/``enable_game``; the
  placements of the game are set to disabled/enabled too, so the desired configuration says what HQ
  wants and ``GET /catalog/devices`` shows a device that did not follow.
* ``max_bet`` ``{"max_bet": <minor units>, "provider"?, "game"?, "enforce"?}``: the agent cannot set a
  machine's max bet (``set_limit`` is "not supported"), so the limit is enforced from HQ: while the
  rule is active every detected device game in its scope whose max bet × denomination exceeds it is
  listed as ``max_bet_over_limit`` in ``GET /catalog/devices``; with ``"enforce": true`` each such game
  is also disabled. ``POST /rules/{id}/revoke`` ends a rule (commands already sent stay sent).

``halls`` limits a rule to some halls (default: every hall, or the key's halls for a hall-scoped key;
naming a hall outside the scope is 403). Commands go only to registered halls.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final, Protocol

from aiohttp import web

from central import catalog as cat
from central.catalog import RuleRecord
from central.commands import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS
from central.repos import HasAudit, HasCatalog, HasCommands, HasDevices, HasHalls
from central.repos.audit import AuditEntry
from central.repos.commands import CommandRecord
from protocols.sync.fields import HALL_RE

from . import params as p
from .catalog import World, _only, ident, integer, load_world
from .context import ApiContext, Handler, api_key, json_body, json_response
from .issue import issue_command
from .openapi_parts import _ERRORS, _WITH_400, _ref
from .params import ApiError

MAX_RULE_HALLS: Final = 1000
RULE_STATES: Final = ("active", "revoked")
RULE_STATUSES: Final = ("no_commands", "in_progress", "applied", "partially_applied", "failed")


def aggregate(statuses: Sequence[str]) -> str:
    """One word for a rule's commands: nothing to do, still going, all applied, some, or none applied."""
    if not statuses:
        return "no_commands"
    if any(s in ("pending", "sent") for s in statuses):
        return "in_progress"
    applied = sum(s == "applied" for s in statuses)
    if applied == len(statuses):
        return "applied"
    return "partially_applied" if applied else "failed"


def _targets(world: World, game_id: str) -> list[tuple[str, str, int]]:
    """(hall, device, SAS game number) wherever ``game_id`` is placed or detected."""
    out = set()
    for pl in world.placements:
        if pl.game == game_id:
            out.add((pl.hall, pl.device, pl.number))
    for (h, d), seen in world.detected.items():
        for g in seen.games:
            found = world.gmap.get(h, d, str(g.number))
            if found is not None and found.id == game_id:
                out.add((h, d, g.number))
    return sorted(out)


def _halls_of(request: web.Request, raw: Any) -> tuple[str, ...] | None:
    key = api_key(request)
    if raw is None:
        return key.halls
    if not isinstance(raw, list) or not raw or len(raw) > MAX_RULE_HALLS:
        raise p.bad_request(f"halls must be a non-empty list of at most {MAX_RULE_HALLS} hall IDs")
    halls = []
    for h in raw:
        if not isinstance(h, str) or HALL_RE.match(h) is None:
            raise p.bad_request(f"halls: {h!r} is not a hall ID ([A-Za-z0-9_-]{{1,64}})")
        if key.halls is not None and h not in key.halls:
            raise ApiError(403, "forbidden", f"hall {h!r} is outside this API key's halls")
        halls.append(h)
    return tuple(sorted(set(halls)))


def _max_bet_params(body: dict[str, Any], world: World) -> dict[str, Any]:
    """A max_bet rule's checked params: ``max_bet``, ``enforce`` and the optional catalog scope."""
    _only(body, ("kind", "max_bet", "provider", "game", "enforce", "halls", "ttl_seconds"), "a max_bet rule")
    params: dict[str, Any] = {"max_bet": integer(body.get("max_bet"), "max_bet (minor units per round)")}
    for name, known in (("provider", world.providers), ("game", world.by_id)):
        if body.get(name) is not None:
            value = ident(body[name], name)
            if value not in known:
                raise p.bad_request(f"{name} {value!r} is not in the catalog")
            params[name] = value
    enforce = body.get("enforce", False)
    if type(enforce) is not bool:
        raise p.bad_request("enforce must be true or false")
    params["enforce"] = enforce
    return params


class Needs(HasAudit, HasCatalog, HasCommands, HasDevices, HasHalls, Protocol):
    """The repositories this feature uses (the app passes :class:`central.repos.Repositories`)."""


def handlers(ctx: ApiContext, store: Needs) -> dict[str, Handler]:

    async def view(rule: RuleRecord, halls: Sequence[str] | None) -> dict[str, Any]:
        commands = []
        now = ctx.clock()
        for cid in rule.commands:
            record = await store.commands.command(cid)
            if record is None or (halls is not None and record.hall not in halls):
                continue
            if not record.final and now >= record.expires_at:
                await store.commands.update_command(record.id, "expired",
                                                    "no result from the hall before expires_at", now)
                record = await store.commands.command(cid) or record
            commands.append(record)
        commands.sort(key=lambda c: (c.hall, c.device or "", c.game or "", c.created_at))
        statuses = [c.status for c in commands]
        return {"id": rule.id, "kind": rule.kind, "params": rule.params,
                "halls": None if rule.halls is None else list(rule.halls), "state": rule.status,
                "status": aggregate(statuses), "counts": dict(sorted(Counter(statuses).items())),
                "created_by": rule.created_by, "created_at": p.rfc3339(rule.created_at),
                "created_at_us": rule.created_at,
                "commands": [{"id": c.id, "hall": c.hall, "device": c.device, "action": c.action, "game": c.game,
                              "status": c.status, "detail": c.detail} for c in commands]}

    async def issue_all(request: web.Request, targets: Sequence[tuple[str, str, int]], action: str, ttl: int,
                        rule_id: str) -> tuple[list[CommandRecord], list[dict[str, Any]]]:
        """Issue one command per target, attaching each to the rule as soon as it exists (so a crash
        half-way leaves a rule that names every command it did send)."""
        registered = {h.id for h in await store.halls.halls()}
        issued, skipped = [], []
        for hall, device, number in targets:
            if hall not in registered:
                skipped.append({"hall": hall, "device": device, "number": number, "reason": "hall not registered"})
                continue
            record = await issue_command(ctx, store, hall=hall, device=device, action=action, game=str(number),
                                         ttl_seconds=ttl, created_by=api_key(request).id,
                                         detail=f"rule {rule_id} by API key {api_key(request).id}")
            await store.catalog.add_rule_commands(rule_id, [record.id])
            issued.append(record)
        return issued, skipped

    async def post_rule(request: web.Request) -> web.Response:
        body = await json_body(request)
        kind = body.get("kind")
        if kind not in cat.RULE_KINDS:
            raise p.bad_request(f"kind must be one of {', '.join(cat.RULE_KINDS)}, not {kind!r}")
        halls = _halls_of(request, body.get("halls"))
        ttl = body.get("ttl_seconds", DEFAULT_TTL_SECONDS)
        ttl = integer(ttl, "ttl_seconds", 1, MAX_TTL_SECONDS)
        world = await load_world(store, None, halls)
        rule_id = str(uuid.uuid4())
        extra: dict[str, Any] = {}
        if kind in ("disable_game", "enable_game"):
            _only(body, ("kind", "game", "halls", "ttl_seconds"), f"a {kind} rule")
            game_id = ident(body.get("game"), "game")
            if game_id not in world.by_id:
                raise p.bad_request(f"game {game_id!r} is not in the catalog")
            params: dict[str, Any] = {"game": game_id}
            targets = _targets(world, game_id)
            action = kind
        else:
            params = _max_bet_params(body, world)
            enforce = params["enforce"]
            limit = cat.LimitRule(id=rule_id, max_bet=params["max_bet"], halls=halls,
                                  provider=params.get("provider"), game=params.get("game"))
            over = cat.over_limit(limit, world.detected.values(), world.gmap)
            extra["noncompliant"] = [
                {"hall": d.hall, "device": d.device, "number": g.number, "max_bet_minor": g.max_bet_minor,
                 "game": _gid(world, d.hall, d.device, g.number)} for d, g in over]
            targets = [(d.hall, d.device, g.number) for d, g in over] if enforce else []
            action = "disable_game"
        # everything is valid: record the rule (and who made it) before anything is sent
        now = ctx.clock()
        rule = RuleRecord(id=rule_id, kind=kind, params=params, halls=halls, created_by=api_key(request).id,
                          created_at=now, status="active", updated_at=now)
        await store.catalog.add_rule(rule)
        await store.audit.add_audit(AuditEntry(
            time=now, actor=api_key(request).id, action="rule.create", target=f"rule/{rule_id}", before=None,
            after={"kind": kind, "params": params, "halls": None if halls is None else list(halls),
                   "targets": [{"hall": h, "device": d, "number": n} for h, d, n in targets]}))
        if kind in ("disable_game", "enable_game"):
            await _set_placements(request, world, params["game"], kind == "enable_game")
        _, skipped = await issue_all(request, targets, action, ttl, rule_id)
        stored = await store.catalog.rule(rule_id)
        assert stored is not None
        return json_response({**await view(stored, None), **extra, "skipped": skipped}, status=202)

    async def _set_placements(request: web.Request, world: World, game_id: str, enabled: bool) -> None:
        by_device: dict[tuple[str, str], list[cat.Placement]] = {}
        for pl in world.placements:
            by_device.setdefault((pl.hall, pl.device), []).append(pl)
        for (h, d), placed in sorted(by_device.items()):
            if not any(pl.game == game_id and pl.enabled != enabled for pl in placed):
                continue
            new = [cat.Placement(pl.hall, pl.device, pl.number, pl.game, enabled if pl.game == game_id else pl.enabled)
                   for pl in placed]
            before = await store.catalog.replace_placements(h, d, new)
            await store.audit.add_audit(AuditEntry(time=ctx.clock(), actor=api_key(request).id,
                                             action="catalog.placements.update", target=f"hall/{h}/device/{d}",
                                             before=[pl.as_dict() for pl in before],
                                             after=[pl.as_dict() for pl in new]))

    def visible(rule: RuleRecord, halls: Sequence[str] | None) -> bool:
        return halls is None or rule.halls is None or bool(set(rule.halls) & set(halls))

    async def find(request: web.Request) -> RuleRecord:
        rule_id = request.match_info["id"]
        rule = await store.catalog.rule(rule_id)
        if rule is None or not visible(rule, api_key(request).halls):
            raise ApiError(404, "not_found", f"no rule {rule_id!r}")
        return rule

    async def get_rule(request: web.Request) -> web.Response:
        rule = await find(request)
        return json_response(await view(rule, api_key(request).halls))

    async def list_rules(request: web.Request) -> web.Response:
        q = request.query
        kind = p.choice(q, "kind", cat.RULE_KINDS)
        state = p.choice(q, "state", RULE_STATES)
        limit = p.integer(q, "limit", low=1, high=1000, default=100)
        assert limit is not None
        halls = api_key(request).halls
        rows = [await view(r, halls) for r in await store.catalog.rules(kind=kind, status=state, limit=limit)
                if visible(r, halls)]
        return json_response({"rows": rows})

    async def revoke(request: web.Request) -> web.Response:
        rule = await find(request)
        key = api_key(request)
        if key.halls is not None and (rule.halls is None or not set(rule.halls) <= set(key.halls)):
            raise ApiError(403, "forbidden", "this rule covers halls outside this API key's halls")
        if rule.status != "revoked":
            now = ctx.clock()
            await store.catalog.set_rule_status(rule.id, "revoked", now)
            await store.audit.add_audit(AuditEntry(time=now, actor=key.id, action="rule.revoke",
                                                   target=f"rule/{rule.id}",
                                             before={"state": rule.status}, after={"state": "revoked"}))
        updated = await store.catalog.rule(rule.id)
        assert updated is not None
        return json_response(await view(updated, key.halls))

    return {"POST /rules": post_rule, "GET /rules": list_rules, "GET /rules/{id}": get_rule,
            "POST /rules/{id}/revoke": revoke}


def _gid(world: World, hall: str, device: str, number: int) -> str | None:
    game = world.gmap.get(hall, device, str(number))
    return None if game is None else game.id


# --- OpenAPI ------------------------------------------------------------------------------------
_404 = {"404": {"description": "No such rule in the key's view (`not_found`).",
                "content": {"application/json": {"schema": _ref("Error")}}}}
_ID_PATH = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]

PATHS: Final[dict[str, Any]] = {
    "/rules": {
        "post": {"operationId": "createRule", "summary": "Create a network-wide rule (issues its commands; audited).",
                 "description": __doc__,
                 "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RuleRequest")}}},
                 "responses": {"202": {"description": "Created; commands issued.", "content": {"application/json": {
                     "schema": _ref("Rule")}}}, **_WITH_400}},
        "get": {"operationId": "listRules", "summary": "Rules, newest first, with their commands' status.",
                "parameters": [{"name": "kind", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": list(cat.RULE_KINDS)}},
                               {"name": "state", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": list(RULE_STATES)}},
                               {"name": "limit", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
                "responses": {"200": {"description": "Rules.", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"rows": {"type": "array", "items": _ref("Rule")}}}}}},
                    **_WITH_400}},
    },
    "/rules/{id}": {"get": {
        "operationId": "getRule", "summary": "One rule; commands past their expiry are marked expired.",
        "parameters": _ID_PATH,
        "responses": {"200": {"description": "The rule.", "content": {"application/json": {
            "schema": _ref("Rule")}}}, **_ERRORS, **_404}}},
    "/rules/{id}/revoke": {"post": {
        "operationId": "revokeRule", "summary": "End a rule (a max-bet limit stops being checked; audited).",
        "parameters": _ID_PATH,
        "responses": {"200": {"description": "The rule, revoked.", "content": {"application/json": {
            "schema": _ref("Rule")}}}, **_ERRORS, **_404}}},
}

SCHEMAS: Final[dict[str, Any]] = {
    "RuleRequest": {"type": "object", "required": ["kind"], "additionalProperties": False, "properties": {
        "kind": {"type": "string", "enum": list(cat.RULE_KINDS)},
        "game": {"type": "string", "description": "Catalog game id (required for disable_game/enable_game)."},
        "provider": {"type": "string", "description": "max_bet only: limit this provider's games."},
        "max_bet": {"type": "integer", "format": "int64", "minimum": 0,
                    "description": "max_bet only: minor units per round."},
        "enforce": {"type": "boolean", "default": False,
                    "description": "max_bet only: disable every device game over the limit now."},
        "halls": {"type": "array", "items": {"type": "string"}, "description": "Default: every hall in scope."},
        "ttl_seconds": {"type": "integer", "minimum": 1, "maximum": MAX_TTL_SECONDS,
                        "default": DEFAULT_TTL_SECONDS}}},
    "Rule": {"type": "object", "properties": {
        "id": {"type": "string", "format": "uuid"}, "kind": {"type": "string", "enum": list(cat.RULE_KINDS)},
        "params": {"type": "object"}, "halls": {"type": "array", "nullable": True, "items": {"type": "string"}},
        "state": {"type": "string", "enum": list(RULE_STATES)},
        "status": {"type": "string", "enum": list(RULE_STATUSES),
                   "description": "Aggregate of the rule's commands."},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "created_by": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
        "created_at_us": {"type": "integer", "format": "int64"},
        "commands": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"}, "hall": {"type": "string"}, "device": {"type": "string"},
            "action": {"type": "string"}, "game": {"type": "string", "description": "SAS game number."},
            "status": {"type": "string"}, "detail": {"type": "string"}}}},
        "noncompliant": {"type": "array", "description": "max_bet only (on creation): device games over the limit.",
                         "items": {"type": "object"}},
        "skipped": {"type": "array", "description": "On creation: targets in halls that are not registered.",
                    "items": {"type": "object"}}}},
}
