"""The aiohttp application: routes under ``/api/v1``, bearer-key auth, roles, hall scopes, JSON errors.

One middleware does, in order: find the route's entry in :data:`~central.api.roles.ROUTE_ROLES`;
unless public, authenticate the ``Authorization: Bearer KEY`` header with
:func:`central.apikeys.authenticate` (401 when missing or bad) and check the role (403); then run the
handler. :class:`~central.api.params.ApiError` becomes its JSON error, aiohttp's 404/405 become JSON
too, and anything unexpected is logged (logger ``central.api``) and answered with a bare 500 — never
a traceback.

Keys are looked up on every request (one primary-key read), so a key created, rotated, revoked or
expired while central runs — by the API or by ``hall-central apikeys`` in another process — takes
effect at the next request.
A bad or unknown key counts against the client's address (:mod:`.loginguard`): past the limit the
address is answered 429 before any key of it is checked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central import dashboard
from central.apikeys import authenticate
from central.commands import (
    DEFAULT_TTL_SECONDS,
    MAX_TTL_SECONDS,
    USER_ACTIONS,
    CommandPublisher,
)
from central.repos import Repositories
from central.repos.errors import DuplicateKey
from central.repos.halls import ApiKeyRecord
from central.repos.ingest import LOG_KINDS
from central.timeutil import Clock, now_micros
from protocols.sync import fingerprint, public_key_from_pem
from protocols.sync.commands import GAME_ACTIONS
from protocols.sync.fields import HALL_RE, ID_RE
from protocols.sync.gamingday import UTC_MIDNIGHT, DayRule

from . import days, ggr_labels
from . import params as p
from .context import KEY, ApiContext, Handler, dumps, json_body, json_response
from .context import scope as _scope
from .features import FEATURES
from .issue import issue_command
from .loginguard import LoginThrottle
from .openapi import EVENTS_MAX_LIMIT, GROUP_BY_PARAM, LOG_MAX_LIMIT, document
from .params import ApiError
from .provider_reports import ggr_by_provider
from .roles import ROUTE_ROLES, allowed, is_public

log = structlog.get_logger("central.api")

PREFIX: Final = "/api/v1"
PROVIDER_UNASSIGNED: Final = "unassigned"

_KEY: Final = KEY


_dumps = dumps
_json = json_response


def _local_hour(rule: DayRule | None, hour_us: int) -> str:
    """The hour's start as the hall's clock showed it, with its offset (RFC 3339)."""
    zone = (rule or UTC_MIDNIGHT).tz
    moment = dt.datetime.fromtimestamp(hour_us / 1_000_000, dt.UTC).astimezone(zone)
    return moment.isoformat(timespec="minutes")


def _error(exc: ApiError) -> web.Response:
    return _json(p.error_body(exc.code, exc.message), status=exc.status, headers=exc.headers)


class _Api:
    """The handlers and the state they share (store, currency, clock, auth cache)."""

    def __init__(self, store: Repositories, currency: str, clock: Clock,
                 presence: Callable[[], Mapping[str, Any]] | None,
                 command_publisher: CommandPublisher | None = None,
                 central_key: Ed25519PrivateKey | None = None,
                 login_throttle: LoginThrottle | None = None) -> None:
        self.store = store
        self.login_throttle = login_throttle
        self.command_publisher = command_publisher
        self.central_key = central_key
        self.currency = currency
        self.clock = clock
        self.presence = presence
        self._openapi = _dumps(document())
        self.ctx = ApiContext(currency=currency, clock=clock, command_publisher=command_publisher,
                              central_key=central_key, presence=presence)

    # --- auth -----------------------------------------------------------------------------------
    async def authenticate(self, request: web.Request) -> ApiKeyRecord:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.strip().partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise ApiError(401, "unauthorized", "an API key is required: Authorization: Bearer KEY",
                           {"WWW-Authenticate": "Bearer"})
        throttle, client = self.login_throttle, request.remote or ""
        if throttle is not None:
            wait = throttle.retry_after(client)
            if wait is not None:
                raise ApiError(429, "too_many_requests", "too many bad API keys from this address; "
                               f"retry after {wait} s", {"Retry-After": str(wait)})
        record = await authenticate(self.store.halls, presented, now=self.clock())
        if record is None:
            if throttle is not None:
                throttle.failure(client, request.path)
            raise ApiError(401, "unauthorized", "the API key is not valid",
                           {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return record

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            route = _route_of(request)
            texts = (*request.query.keys(), *request.query.values(), *request.match_info.values())
            if any("\x00" in text for text in texts):
                raise p.bad_request("the path or a query parameter holds a NUL character (U+0000)")
            if route is not None and not is_public(route):
                key = await self.authenticate(request)
                if not allowed(route, key.role):
                    raise ApiError(403, "forbidden", f"role {key.role!r} may not use {route}")
                request[_KEY] = key
            return await handler(request)
        except ApiError as exc:
            return _error(exc)
        except DuplicateKey as exc:   # either backend's unique key given twice: the request's conflict
            return _error(ApiError(409, "conflict", str(exc)))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "bad_request")
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return _json(p.error_body(code, exc.reason), status=exc.status, headers=headers)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("api_error", method=request.method, path=request.path)
            return _json(p.error_body("internal", "internal error; see central's log"), status=500)

    # --- scope ----------------------------------------------------------------------------------
    @staticmethod
    def scope(request: web.Request) -> tuple[str | None, Sequence[str] | None]:
        return _scope(request)

    # --- handlers -------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"status": "ok"}
        if self.presence is not None:
            body["presence"] = dict(self.presence())
        return _json(body)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(text=self._openapi, content_type="application/json")

    async def ggr(self, request: web.Request) -> web.Response:
        q = request.query
        group_by = p.choice(q, "group_by", GROUP_BY_PARAM, default="device")
        hall, halls = self.scope(request)
        rules = days.rules_in_scope(await self.store.halls.halls(), hall, halls)
        parts = []
        periods = []
        for piece in days.period(q, rules, self.clock()):
            scoped = days.slice_scope(piece, halls)
            periods.append((piece.day_from, piece.day_to, scoped))
            if group_by != "provider":
                parts.append(await self.store.reports.ggr(group_by, day_from=piece.day_from, day_to=piece.day_to,
                                                          hall=hall,
                                                  halls=scoped))
            else:  # the game catalog maps (hall, device, game number) to providers
                parts.append(await ggr_by_provider(self.store, day_from=piece.day_from, day_to=piece.day_to,
                                                   hall=hall, halls=scoped))
        rows = days.merge(parts) if parts else []
        names = await ggr_labels.labels(self.store, group_by, rows, periods, hall, halls)
        return _json({"currency": self.currency, "group_by": group_by,
                      "rows": [{**r.as_dict(), "label": label} for r, label in zip(rows, names, strict=True)],
                      "days": days.days_body(rules)})

    async def hourly(self, request: web.Request) -> web.Response:
        q = request.query
        hall, halls = self.scope(request)
        device = p.text(q, "device")
        if device is not None and hall is None:
            raise p.bad_request("device IDs are per hall: give hall= too")
        rules = days.rules_in_scope(await self.store.halls.halls(), hall, halls)
        rows: list[dict[str, Any]] = []
        day = p.text(q, "day") or days.TODAY
        if day != days.TODAY:
            p.date(q, "day")   # a 400 unless YYYY-MM-DD
        for piece in days.period({"from": day, "to": day}, rules, self.clock()):
            if piece.day_from is None:
                continue
            for r in await self.store.reports.hourly(day=piece.day_from, hall=hall, halls=days.slice_scope(piece,
                                                                                                           halls),
                                             device=device):
                row: dict[str, Any] = {"hall": r.hall, "day": r.day, "hour": p.rfc3339(r.hour), "hour_us": r.hour,
                                       "local_hour": _local_hour(rules.get(r.hall), r.hour), "bets": r.bets,
                                       "wins": r.wins, "ggr": r.ggr, "rounds": r.rounds, "cash_in": r.cash_in,
                                       "cash_out": r.cash_out}
                if r.device is not None:
                    row["device"] = r.device
                rows.append(row)
        return _json({"currency": self.currency, "rows": rows, "days": days.days_body(rules)})

    async def devices(self, request: web.Request) -> web.Response:
        hall, halls = self.scope(request)
        rows = [{"id": d.id, "hall": d.hall, "kind": d.kind, "online": d.online, "enabled": d.enabled,
                 "first_seen": p.rfc3339(d.first_seen), "last_seen": p.rfc3339(d.last_seen),
                 "first_seen_us": d.first_seen, "last_seen_us": d.last_seen, "last_seq": d.last_seq}
                for d in await self.store.devices.devices(hall=hall, halls=halls)]
        return _json({"rows": rows})

    async def halls(self, request: web.Request) -> web.Response:
        key = request[_KEY]
        rows = [{"id": h.id, "fingerprint": _fingerprint(h.public_key_pem), "added_at": p.rfc3339(h.added_at),
                 "added_at_us": h.added_at, "last_seq": h.last_seq, "online": h.online, "session": h.session,
                 "status_at": p.rfc3339(h.status_at), "status_at_us": h.status_at, "timezone": h.timezone,
                 "gaming_day_start": h.gaming_day_start, "settings_version": h.settings_version, "state": h.state}
                for h in await self.store.halls.halls() if key.halls is None or h.id in key.halls]
        return _json({"rows": rows})

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        after_seq = p.integer(q, "after_seq")
        limit = p.integer(q, "limit", low=1, high=EVENTS_MAX_LIMIT, default=100)
        assert limit is not None
        hall, halls = self.scope(request)
        time_from, time_to = await days.window_in_scope(q, self.store.halls, hall, halls, self.clock())
        after_hall = p.text(q, "after_hall")
        if after_hall is not None and HALL_RE.match(after_hall) is None:
            raise p.bad_request("after_hall must be a hall ID ([A-Za-z0-9_-]{1,64})")
        if after_seq is not None and hall is None and after_hall is None:
            raise p.bad_request("without hall=, page with after_hall and after_seq together (the previous page's "
                                "next_after_hall and next_after_seq): seqs are per hall")
        rows = await self.store.ingest.events(hall=hall, device=p.text(q, "device"), type=p.text(q, "type"),
                                       time_from=time_from, time_to=time_to, after_seq=after_seq, limit=limit,
                                       halls=halls, after_hall=None if hall is not None else after_hall)
        full = len(rows) == limit
        return _json({"rows": rows, "next_after_seq": rows[-1]["seq"] if full else None,
                      "next_after_hall": rows[-1]["hall"] if full else None})

    async def integration_log(self, request: web.Request) -> web.Response:
        q = request.query
        kind = p.choice(q, "kind", LOG_KINDS)
        limit = p.integer(q, "limit", low=1, high=LOG_MAX_LIMIT, default=100)
        assert limit is not None
        hall, halls = self.scope(request)
        time_from, time_to = await days.window_in_scope(q, self.store.halls, hall, halls, self.clock())
        if time_from is not None and time_to is not None and time_from > time_to:
            raise p.bad_request("from is after to")
        entries = await self.store.ingest.integration_log(hall=hall, kind=kind, limit=limit, halls=halls,
                                                   device=p.text(q, "device"), time_from=time_from, time_to=time_to)
        rows = [{"time": p.rfc3339(e.time), "time_us": e.time, "hall": e.hall, "kind": e.kind, "detail": e.detail,
                 "device": e.device} for e in entries]
        return _json({"rows": rows})

    # --- commands -------------------------------------------------------------------------------
    async def post_command(self, request: web.Request) -> web.Response:
        key = request[_KEY]
        body = await _json_body(request)
        unknown = sorted(set(body) - {"hall", "device", "action", "game", "ttl_seconds"})
        if unknown:
            raise p.bad_request(f"{unknown[0]} is not a field of a command (hall, device, action, game, ttl_seconds)")
        hall = body.get("hall")
        if not isinstance(hall, str) or HALL_RE.match(hall) is None:
            raise p.bad_request("hall must be a hall ID ([A-Za-z0-9_-]{1,64})")
        if key.halls is not None and hall not in key.halls:
            raise ApiError(403, "forbidden", f"hall {hall!r} is outside this API key's halls")
        action = body.get("action")
        if action not in USER_ACTIONS:
            raise p.bad_request(f"action must be one of {', '.join(USER_ACTIONS)}, not {action!r}")
        device = body.get("device")
        if not isinstance(device, str) or ID_RE.match(device) is None:
            raise p.bad_request("device is required: a device ID ([A-Za-z0-9_.:-]{1,64})")
        game = body.get("game")
        if action in GAME_ACTIONS:
            if not isinstance(game, str) or ID_RE.match(game) is None:
                raise p.bad_request(f"game is required for {action}: a game ID ([A-Za-z0-9_.:-]{{1,64}})")
        elif game is not None:
            raise p.bad_request(f"game is only for {' and '.join(sorted(GAME_ACTIONS))}, not {action}")
        ttl = body.get("ttl_seconds", DEFAULT_TTL_SECONDS)
        if type(ttl) is not int or not 1 <= ttl <= MAX_TTL_SECONDS:
            raise p.bad_request(f"ttl_seconds must be an integer from 1 to {MAX_TTL_SECONDS}, not {ttl!r}")
        target = await self.store.halls.get_hall(hall)
        if target is None:
            raise p.bad_request(f"hall {hall!r} is not registered")
        if target.state != "active":
            raise ApiError(409, "conflict", f"hall {hall!r} is {target.state}: it takes no commands "
                                            "(hall-central halls enable)")

        record = await issue_command(self.ctx, self.store, hall=hall, device=device, action=action, game=game,
                                     ttl_seconds=ttl, created_by=key.id)
        return _json({"id": record.id, "status": record.status}, status=202)

    async def get_command(self, request: web.Request) -> web.Response:
        key = request[_KEY]
        command_id = request.match_info["id"]
        record = await self.store.commands.command(command_id)
        if record is None or (key.halls is not None and record.hall not in key.halls):
            raise ApiError(404, "not_found", f"no command {command_id!r}")
        now = self.clock()
        if not record.final and now >= record.expires_at:
            await self.store.commands.update_command(record.id, "expired",
                                                     "no result from the hall before expires_at", now)
            record = await self.store.commands.command(record.id)
            assert record is not None
        return _json({"id": record.id, "hall": record.hall, "device": record.device, "action": record.action,
                      "game": record.game, "status": record.status, "detail": record.detail,
                      "created_by": record.created_by,
                      "issued_at": p.rfc3339(record.issued_at), "issued_at_us": record.issued_at,
                      "expires_at": p.rfc3339(record.expires_at), "expires_at_us": record.expires_at,
                      "updated_at": p.rfc3339(record.updated_at), "updated_at_us": record.updated_at})


_json_body = json_body


def _route_of(request: web.Request) -> str | None:
    """``"GET /reports/ggr"`` for a matched route of ours, else None (404/405 are raised by the handler)."""
    resource = request.match_info.route.resource
    if resource is None or not resource.canonical.startswith(PREFIX):
        return None
    route = f"{request.method} {resource.canonical[len(PREFIX):]}"
    return route if route in ROUTE_ROLES else None


def _fingerprint(pem: str) -> str | None:
    try:
        return fingerprint(public_key_from_pem(pem.encode()))
    except Exception:  # a stored key that no longer parses must not break the list
        return None


def build_app(store: Repositories, *, currency: str, clock: Callable[[], int] = now_micros,
              presence: Callable[[], Mapping[str, Any]] | None = None,
              command_publisher: CommandPublisher | None = None,
              central_key: Ed25519PrivateKey | None = None,
              on_hall_settings: Callable[[str], Awaitable[Any]] | None = None,
              login_throttle: LoginThrottle | None = None) -> web.Application:
    """The HTTP API on ``store``: mount it with ``aiohttp.web.AppRunner`` (or a test server).

    ``currency`` is the minor-unit currency of every amount (reports name it); ``clock`` gives now in
    microseconds (for the short positive auth cache); ``presence``, if given, is called by
    ``GET /health`` and its mapping returned under ``presence`` (keep it free of secrets: health needs
    no key). ``command_publisher`` (see :mod:`central.commands`) and ``central_key`` (which signs
    commands) let ``POST /commands`` publish; without them a command is stored as ``failed``. The app
    does not own ``store``: closing it is the caller's job. ``login_throttle``, if given, rate-limits
    bad keys per client address (``hall-central serve`` always gives one).
    """
    api = _Api(store, currency, clock, presence, command_publisher, central_key, login_throttle)
    app = web.Application(middlewares=[api.middleware])
    handlers: dict[str, Handler] = {
        "GET /health": api.health,
        "GET /openapi.json": api.openapi,
        "GET /reports/ggr": api.ggr,
        "GET /reports/hourly": api.hourly,
        "GET /devices": api.devices,
        "GET /halls": api.halls,
        "GET /events": api.events,
        "GET /integration-log": api.integration_log,
        "POST /commands": api.post_command,
        "GET /commands/{id}": api.get_command,
    }
    ctx = ApiContext(currency=currency, clock=clock, command_publisher=command_publisher,
                     central_key=central_key, presence=presence, on_hall_settings=on_hall_settings)
    for feature in FEATURES:
        more = feature.handlers(ctx, store)  # each takes the repositories it declares (its ``Needs``)
        clash = set(more) & set(handlers)
        if clash:
            raise AssertionError(f"{feature.__name__} redefines {sorted(clash)}")
        handlers.update(more)
    if set(handlers) != set(ROUTE_ROLES):
        raise AssertionError("every route needs an entry in ROUTE_ROLES and a handler")
    for route, handler in handlers.items():
        method, path = route.split(" ", 1)
        app.router.add_route(method, PREFIX + path, handler)
    dashboard.add_routes(app)  # public static files: "/" and /dashboard/... (no data; see central.dashboard)
    return app
