"""``GET /audit``: the trail of every change made through the API or the CLI (who, what, when, before/after).

Read-only and append-only: there is no route that changes or deletes an entry. Entries come oldest
first and page with ``after_id`` (``next_after_id`` is the value for the next page, null on the last).
A key limited to some halls sees only entries whose target belongs to one of its halls
(``hall/<H>`` or under ``hall/<H>/``, see :mod:`central.audit`); network-wide changes (API keys, the
catalog, rules) are not shown to it.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from aiohttp import web

from central.audit import target_hall
from central.repos import HasAudit, HasHalls
from central.repos.audit import AuditEntry

from . import days
from . import params as p
from .context import ApiContext, Handler, json_response, scope
from .openapi_parts import _INSTANT, _MICROS, _TIME, _WITH_400, _param, _ref

AUDIT_MAX_LIMIT: Final = 1000


def _row(entry: AuditEntry, names: dict[str, str | None]) -> dict[str, Any]:
    return {"id": entry.id, "time": p.rfc3339(entry.time), "time_us": entry.time, "actor": entry.actor,
            "actor_name": names.get(entry.actor), "action": entry.action, "target": entry.target,
            "hall": target_hall(entry.target),
            "before": entry.before, "after": entry.after}


class Needs(HasAudit, HasHalls, Protocol):
    """The repositories this feature uses (the app passes :class:`central.repos.Repositories`)."""


def handlers(ctx: ApiContext, store: Needs) -> dict[str, Handler]:
    async def list_audit(request: web.Request) -> web.Response:
        q = request.query
        hall, halls = scope(request)
        time_from, time_to = await days.window_in_scope(q, store.halls, hall, halls, ctx.clock())
        if time_from is not None and time_to is not None and time_from > time_to:
            raise p.bad_request("from is after to")
        after_id = p.integer(q, "after_id")
        limit = p.integer(q, "limit", low=1, high=AUDIT_MAX_LIMIT, default=100)
        assert limit is not None
        entries = await store.audit.audit(actor=p.text(q, "actor"), action=p.text(q, "action"), time_from=time_from,
                                        time_to=time_to, after_id=after_id, limit=limit,
                                        halls=[hall] if hall is not None else halls)
        names = {k.id: k.name for k in await store.halls.api_keys()} if entries else {}
        rows = [_row(e, names) for e in entries]
        return json_response({"rows": rows, "next_after_id": rows[-1]["id"] if len(rows) == limit else None})

    return {"GET /audit": list_audit}


PATHS: Final[dict[str, Any]] = {
    "/audit": {"get": {
        "operationId": "listAudit",
        "summary": "Every change made through the API or the CLI: who, what, when, before and after.",
        "description": (
            "Oldest first. `actor` is the API key id (never the key) or `cli:<OS user>`, `actor_name` the key's "
            "owner name (`apikeys create --name`; null for the CLI and for keys without a name); `action` names the "
            "change (`command.create`, `hall.add`, `hall.key.replace`, `apikey.create`, `catalog.game.update`…); "
            "`target` what changed (`hall/A/device/egm-001`, `apikey/<id>`…), and `hall` the hall it belongs to "
            "(null for network-wide changes). `before`/`after` are snapshots (null when the thing did not exist "
            "before / after); secrets are never recorded. `from`/`to` bound the time as [from, to). Page with "
            "`after_id` = the previous page's `next_after_id`. A key with a hall scope sees only entries of its "
            "halls; `hall=` narrows to one hall."),
        "parameters": [
            {"name": "actor", "in": "query", "required": False, "schema": {"type": "string"},
             "example": "cli:root"},
            {"name": "action", "in": "query", "required": False, "schema": {"type": "string"},
             "example": "command.create"},
            {"name": "from", "in": "query", "required": False, "schema": _INSTANT},
            {"name": "to", "in": "query", "required": False, "schema": _INSTANT},
            {"name": "after_id", "in": "query", "required": False,
             "schema": {"type": "integer", "format": "int64", "minimum": 0}},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": AUDIT_MAX_LIMIT, "default": 100}},
            _param("hall"),
        ],
        "responses": {"200": {"description": "One page of entries.",
                              "content": {"application/json": {"schema": _ref("AuditPage")}}}, **_WITH_400},
    }},
}

SCHEMAS: Final[dict[str, Any]] = {
    "AuditEntry": {
        "type": "object",
        "required": ["id", "time", "time_us", "actor", "actor_name", "action", "target", "hall", "before", "after"],
        "properties": {
            "id": {"type": "integer", "format": "int64"}, "time": _TIME, "time_us": _MICROS,
            "actor": {"type": "string"}, "action": {"type": "string"}, "target": {"type": "string"},
            "actor_name": {"type": "string", "nullable": True,
                           "description": "The actor key's owner name; null for the CLI or a key without one."},
            "hall": {"type": "string", "nullable": True},
            "before": {"nullable": True, "description": "The state before (any JSON value), null if none."},
            "after": {"nullable": True, "description": "The state after (any JSON value), null if none."},
        },
    },
    "AuditPage": {
        "type": "object", "required": ["rows", "next_after_id"],
        "properties": {"rows": {"type": "array", "items": _ref("AuditEntry")},
                       "next_after_id": {"type": "integer", "format": "int64", "nullable": True}},
    },
}
