"""The OpenAPI 3.0.3 description of the HTTP API, written by hand (served at ``/api/v1/openapi.json``).

Paths are relative to the server URL ``/api/v1``. Each operation's ``x-roles`` (the roles allowed, or
``public``) is filled in from :data:`central.api.roles.ROUTE_ROLES` by :func:`document`, so the
authorisation table lives in one place. A test checks that the paths here and the app's routes match.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from central.commands import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, USER_ACTIONS
from central.repos.commands import COMMAND_STATUSES
from central.repos.halls import ROLES
from central.repos.ingest import LOG_KINDS

from .features import FEATURES
from .openapi_parts import (
    _ERRORS,
    _INSTANT,
    _MICROS,
    _MONEY,
    _NULLABLE_MICROS,
    _NULLABLE_TIME,
    _TIME,
    _WITH_400,
    _json,
    _param,
    _ref,
)
from .roles import ROUTE_ROLES

GROUP_BY_PARAM: Final = ("device", "game", "provider", "hall", "day", "network")
EVENTS_MAX_LIMIT: Final = 1000
LOG_MAX_LIMIT: Final = 1000


DOCUMENT: Final[dict[str, Any]] = {
    "openapi": "3.0.3",
    "info": {
        "title": "hallsync central API",
        "version": "1.0.0",
        "description": (
            "Read access to what the halls reported: GGR reports, devices, halls and their agents' status, "
            "stored events and the integration log; signed commands to halls (`POST /commands`). "
            "Amounts are integers in minor units of `currency`; "
            "times are RFC 3339 UTC strings with microseconds, with the raw microseconds beside them "
            "(`*_us`). Every request except `/health` and `/openapi.json` needs `Authorization: Bearer KEY`; "
            "a key with a hall scope sees only its halls, and naming another hall with `hall=` is 403. "
            "Errors are `{\"error\": {\"code\", \"message\"}}`. Unknown query parameters are ignored. "
            "Each operation's `x-roles` lists the roles allowed."),
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}],
    "paths": {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Liveness (no key needed).",
                "security": [],
                "responses": {"200": _json("Health", "Central answers."),
                              "500": {"$ref": "#/components/responses/InternalError"}},
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document (no key needed).",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI 3.0.3 document.",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            },
        },
        "/reports/ggr": {
            "get": {
                "operationId": "ggrReport",
                "summary": "Gross gaming revenue (bets − wins) from the rollups, grouped.",
                "description": (
                    "Days are each hall's gaming days (its time zone and gaming-day start, listed in `days`; UTC "
                    "midnight for a hall without settings) of the events' agent time, `from`/`to` inclusive; "
                    "`today` in either means each hall's own current gaming day. "
                    "`group_by=device` rows carry `hall` (device IDs are per hall). `group_by=game` has the "
                    "key `\"\"` for money outside a game (bills, tickets). `group_by=provider`: each (hall, "
                    "device, SAS game number) maps to a catalog game by the device's placements, else by "
                    "its reported game and paytable IDs; money no catalog game accounts for (and money outside "
                    "games) is under the key `unassigned`, so the rows add up to the network total. "
                    "`group_by=network`: one row, key `network`, over every hall in the key's scope (or `hall`). "
                    "Every row has a `label` to show a person (the key is unchanged, for joins): `game` rows name "
                    "the catalog games their number holds on the machines that played it (`Fruits (game 1)`, "
                    "`Fruits / not in the catalog (game 1)`, `game 7 (not in the catalog)`) and the key `\"\"` "
                    "reads `not in a game (terminals, bills, tickets)`; `provider` rows give the provider's "
                    "name and `unassigned` reads `not in a catalog game (...)`; other groupings repeat the key."),
                "parameters": [
                    {"name": "group_by", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": list(GROUP_BY_PARAM), "default": "device"}},
                    {"name": "from", "in": "query", "required": False,
                     "description": "First gaming day (inclusive), YYYY-MM-DD or `today`.",
                     "schema": {"type": "string"}},
                    {"name": "to", "in": "query", "required": False,
                     "description": "Last gaming day (inclusive), YYYY-MM-DD or `today`.",
                     "schema": {"type": "string"}},
                    _param("hall"),
                ],
                "responses": {"200": _json("GgrReport", "The report."), **_WITH_400},
            },
        },
        "/reports/hourly": {
            "get": {
                "operationId": "hourlyReport",
                "summary": "GGR and rounds per local clock hour of one gaming day, per hall (or per device).",
                "description": (
                    "From the hourly rollups: one row per hall (with `device` and `hall`: per device of that hall) "
                    "and local clock hour with money, ordered by hour. `hour` is the UTC instant the hour began, "
                    "`local_hour` the same on the hall's clock (a fall-back night has two 01:00 rows). `day` "
                    "defaults to each hall's current gaming day."),
                "parameters": [
                    {"name": "day", "in": "query", "required": False,
                     "description": "The gaming day, YYYY-MM-DD or `today` (default).",
                     "schema": {"type": "string"}},
                    _param("hall"),
                    {"name": "device", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "The hours.", "content": {"application/json": {
                    "schema": {"type": "object"}}}}, **_WITH_400},
            },
        },
        "/devices": {
            "get": {
                "operationId": "listDevices",
                "summary": "Devices as seen in their halls' events.",
                "parameters": [_param("hall")],
                "responses": {"200": _json("DeviceList", "Devices by hall and id."), **_WITH_400},
            },
        },
        "/halls": {
            "get": {
                "operationId": "listHalls",
                "summary": "Registered halls, their stored chain end and their agents' MQTT status.",
                "responses": {"200": _json("HallList", "Halls by id."), **_ERRORS},
            },
        },
        "/events": {
            "get": {
                "operationId": "listEvents",
                "summary": "Stored events in wire form, ordered by hall and seq.",
                "description": (
                    "`from`/`to` bound the agent time as [from, to). Page with `after_seq` (and, without "
                    "`hall`, `after_hall`): the previous page's `next_after_seq` and `next_after_hall`, both "
                    "null on the last page (a page shorter than `limit`)."),
                "parameters": [
                    _param("hall"),
                    {"name": "device", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "type", "in": "query", "required": False, "schema": {"type": "string"},
                     "example": "game.bet"},
                    {"name": "from", "in": "query", "required": False, "schema": _INSTANT},
                    {"name": "to", "in": "query", "required": False, "schema": _INSTANT},
                    {"name": "after_seq", "in": "query", "required": False,
                     "schema": {"type": "integer", "format": "int64", "minimum": 0}},
                    {"name": "after_hall", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "Without `hall`: the hall of the previous page's last row."},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": EVENTS_MAX_LIMIT, "default": 100}},
                ],
                "responses": {"200": _json("EventPage", "One page of events."), **_WITH_400},
            },
        },
        "/integration-log": {
            "get": {
                "operationId": "integrationLog",
                "summary": "Integration log (duplicates, rejections, format errors, gaps, ...), newest first.",
                "description": "`from`/`to` bound the row's time as [from, to).",
                "parameters": [
                    _param("hall"),
                    {"name": "kind", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": list(LOG_KINDS)}},
                    {"name": "device", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "from", "in": "query", "required": False, "schema": _INSTANT},
                    {"name": "to", "in": "query", "required": False, "schema": _INSTANT},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": LOG_MAX_LIMIT, "default": 100}},
                ],
                "responses": {"200": _json("LogList", "Log rows, newest first."), **_WITH_400},
            },
        },
        "/commands": {
            "post": {
                "operationId": "sendCommand",
                "summary": "Send a signed command to one device of a hall.",
                "description": (
                    "Central signs the command with its key, stores it `pending`, publishes it (MQTT QoS 1) to "
                    "`hallsync/v1/halls/{hall}/commands` and marks it `sent` once the broker acknowledged. "
                    "If central is not connected to the broker it is `failed` at once; if the publish was not "
                    "confirmed it stays `pending` (the hall's result or the expiry settles it). The hall applies "
                    "it at most once and answers; follow it with `GET /commands/{id}`. A key with a hall scope "
                    "may only address its halls (403). The hall must be registered (400) and active (409: "
                    "disabled or removed by `hall-central halls disable|remove`)."),
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": _ref("CommandRequest")}}},
                "responses": {"202": _json("CommandAccepted", "Stored (and published, see `status`)."),
                              "409": {"description": "The hall is disabled or removed (`conflict`).",
                                      "content": {"application/json": {"schema": _ref("Error")}}},
                              **_WITH_400},
            },
        },
        "/commands/{id}": {
            "get": {
                "operationId": "getCommand",
                "summary": "A command and its status.",
                "description": (
                    "`pending` (stored, publish not confirmed), `sent` (the broker acknowledged), `applied` or "
                    "`failed` (the hall's signed result; a command the hall rejected is `failed` with the reason "
                    "in `detail`), `expired` (the hall answered expired, or no result came before `expires_at`: "
                    "reading it then turns it `expired`). Another hall's command is 404 for a hall-scoped key."),
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "string", "format": "uuid"}}],
                "responses": {"200": _json("CommandStatus", "The command."),
                              "404": _json("Error", "No such command (`not_found`)."), **_ERRORS},
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "hsk_<id>_<secret>",
                       "description": "An API key from `hall-central apikeys create`; roles: " + ", ".join(ROLES)},
        },
        "parameters": {
            "hall": {"name": "hall", "in": "query", "required": False, "description": (
                "Only this hall. Outside the key's hall scope: 403."), "schema": {"type": "string"}},
        },
        "responses": {
            "BadRequest": _json("Error", "A parameter is invalid (`bad_request`); the message names it."),
            "Unauthorized": {
                "description": "No key or a bad key (`unauthorized`).",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
                "content": {"application/json": {"schema": _ref("Error")}},
            },
            "Forbidden": _json("Error", "The key's role or hall scope does not allow this (`forbidden`)."),
            "TooManyRequests": {
                "description": "Too many bad keys from this client address (`too_many_requests`); no key is "
                               "checked until the time in `Retry-After` has passed.",
                "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
                "content": {"application/json": {"schema": _ref("Error")}},
            },
            "InternalError": _json("Error", "Unexpected failure (`internal`); details are in central's log."),
        },
        "schemas": {
            "Error": {
                "type": "object", "required": ["error"],
                "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string", "enum": ["bad_request", "unauthorized", "forbidden", "not_found",
                                                        "method_not_allowed", "internal",
                                                        "unavailable", "too_many_requests"]},
                    "message": {"type": "string"}}}},
            },
            "Health": {
                "type": "object", "required": ["status"],
                "properties": {"status": {"type": "string", "enum": ["ok"]},
                               "presence": {"type": "object", "additionalProperties": True,
                                            "description": "What the running service reports, if anything."}},
            },
            "GgrRow": {
                "type": "object", "required": ["key", "label", "bets", "wins", "ggr", "rounds", "cash_in",
                                               "cash_out"],
                "properties": {
                    "key": {"type": "string", "description": "Device id, game id, `unassigned`, hall id or "
                                                             "YYYY-MM-DD, by `group_by`."},
                    "label": {"type": "string", "description": "What to show a person: catalog game or "
                              "provider names, `not in a game (terminals, bills, tickets)` for money outside "
                              "games; the key itself for devices, halls, days and the network."},
                    "hall": {"type": "string", "description": "Only with `group_by=device`."},
                    "bets": _MONEY, "wins": _MONEY,
                    "ggr": {**_MONEY, "description": "bets − wins, minor units."},
                    "rounds": {"type": "integer", "format": "int64"},
                    "cash_in": _MONEY, "cash_out": _MONEY,
                },
            },
            "GgrReport": {
                "type": "object", "required": ["currency", "group_by", "rows"],
                "properties": {"currency": {"type": "string", "example": "EUR"},
                               "group_by": {"type": "string", "enum": list(GROUP_BY_PARAM)},
                               "rows": {"type": "array", "items": _ref("GgrRow")},
                               "days": _ref("HallDays")},
            },
            "HallDays": {
                "type": "object", "description": "Per hall in scope: the gaming day its rows use.",
                "additionalProperties": {"type": "object", "properties": {
                    "timezone": {"type": "string", "example": "Europe/Kyiv"},
                    "gaming_day_start": {"type": "string", "example": "06:00"}}},
            },
            "Device": {
                "type": "object",
                "required": ["id", "hall", "kind", "online", "enabled", "first_seen", "last_seen", "last_seq"],
                "properties": {
                    "id": {"type": "string"}, "hall": {"type": "string"},
                    "kind": {"type": "string", "enum": ["egm", "terminal", "unknown"]},
                    "online": {"type": "boolean", "nullable": True,
                               "description": "From the device's last status event; null until one arrived."},
                    "enabled": {"type": "boolean"},
                    "first_seen": _TIME, "last_seen": _TIME, "first_seen_us": _MICROS, "last_seen_us": _MICROS,
                    "last_seq": {"type": "integer", "format": "int64"},
                },
            },
            "DeviceList": {"type": "object", "required": ["rows"],
                           "properties": {"rows": {"type": "array", "items": _ref("Device")}}},
            "Hall": {
                "type": "object",
                "required": ["id", "fingerprint", "added_at", "last_seq", "online", "session", "status_at"],
                "properties": {
                    "id": {"type": "string"},
                    "fingerprint": {"type": "string", "example": "ed25519:0123456789abcdef",
                                    "description": "Of the hall's registered public key."},
                    "added_at": _TIME, "added_at_us": _MICROS,
                    "last_seq": {"type": "integer", "format": "int64",
                                 "description": "End of the contiguous chain central holds."},
                    "online": {"type": "boolean", "nullable": True,
                               "description": "The agent's last MQTT status; null until one arrived."},
                    "session": {"type": "integer", "format": "int64", "nullable": True,
                                "description": "The agent's connection counter of that status."},
                    "status_at": _NULLABLE_TIME, "status_at_us": _NULLABLE_MICROS,
                    "state": {"type": "string", "enum": ["active", "disabled", "removed"],
                              "description": "`disabled` or `removed` (hall-central halls disable|remove): its "
                                             "messages are refused; its stored data stays in every report."},
                },
            },
            "HallList": {"type": "object", "required": ["rows"],
                         "properties": {"rows": {"type": "array", "items": _ref("Hall")}}},
            "Event": {
                "type": "object",
                "required": ["v", "hall", "seq", "id", "device", "type", "agent_time", "device_time",
                             "central_time", "prev_hash", "hash", "data"],
                "properties": {
                    "v": {"type": "integer"}, "hall": {"type": "string"},
                    "seq": {"type": "integer", "format": "int64"}, "id": {"type": "string", "format": "uuid"},
                    "device": {"type": "string"}, "type": {"type": "string"},
                    "agent_time": _MICROS, "device_time": _NULLABLE_MICROS, "central_time": _MICROS,
                    "prev_hash": {"type": "string"}, "hash": {"type": "string"},
                    "data": {"type": "object", "additionalProperties": True},
                },
            },
            "EventPage": {
                "type": "object", "required": ["rows", "next_after_seq", "next_after_hall"],
                "properties": {"rows": {"type": "array", "items": _ref("Event")},
                               "next_after_seq": {"type": "integer", "format": "int64", "nullable": True},
                               "next_after_hall": {"type": "string", "nullable": True}},
            },
            "LogEntry": {
                "type": "object", "required": ["time", "hall", "kind", "detail", "device"],
                "properties": {
                    "time": _TIME, "time_us": _MICROS,
                    "hall": {"type": "string", "nullable": True}, "device": {"type": "string", "nullable": True},
                    "kind": {"type": "string", "enum": list(LOG_KINDS)}, "detail": {"type": "string"},
                },
            },
            "CommandRequest": {
                "type": "object", "required": ["hall", "device", "action"], "additionalProperties": False,
                "properties": {
                    "hall": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    "device": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                    "action": {"type": "string", "enum": list(USER_ACTIONS)},
                    "game": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$",
                             "description": "Required for `disable_game`/`enable_game`, refused otherwise."},
                    "ttl_seconds": {"type": "integer", "minimum": 1, "maximum": MAX_TTL_SECONDS,
                                    "default": DEFAULT_TTL_SECONDS,
                                    "description": "The command expires this long after it is issued."},
                },
            },
            "CommandAccepted": {
                "type": "object", "required": ["id", "status"],
                "properties": {"id": {"type": "string", "format": "uuid"},
                               "status": {"type": "string", "enum": list(COMMAND_STATUSES)}},
            },
            "CommandStatus": {
                "type": "object",
                "required": ["id", "hall", "device", "action", "game", "status", "detail", "issued_at", "expires_at",
                             "updated_at"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"}, "hall": {"type": "string"},
                    "device": {"type": "string", "nullable": True},
                    "action": {"type": "string"}, "game": {"type": "string", "nullable": True},
                    "status": {"type": "string", "enum": list(COMMAND_STATUSES)},
                    "detail": {"type": "string"},
                    "created_by": {"type": "string", "nullable": True, "description": "API key id."},
                    "issued_at": _TIME, "issued_at_us": _MICROS, "expires_at": _TIME, "expires_at_us": _MICROS,
                    "updated_at": _TIME, "updated_at_us": _MICROS,
                },
            },
            "LogList": {"type": "object", "required": ["rows"],
                        "properties": {"rows": {"type": "array", "items": _ref("LogEntry")}}},
        },
    },
}


def document() -> dict[str, Any]:
    """A copy of :data:`DOCUMENT` with each operation's ``x-roles`` from the route table."""
    doc = copy.deepcopy(DOCUMENT)
    for feature in FEATURES:
        doc["paths"].update(copy.deepcopy(feature.PATHS))
        doc["components"]["schemas"].update(copy.deepcopy(feature.SCHEMAS))
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            roles = ROUTE_ROLES[f"{method.upper()} {path}"]
            operation["x-roles"] = ["public"] if roles is None else sorted(roles)
    return doc
