"""The alert list over HTTP: what the monitor (:mod:`central.monitor`) raised, and acknowledging it.

Reading is for everyone who watches the floor (admin, operator, viewer, technician) within the key's
halls; acknowledging ("I have seen it, I am on it") is for those who act on it (admin, operator,
technician). An acknowledgement is recorded once — who (API key id) and when — and written to the
audit log; it never clears the alert: only the condition ending does.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from aiohttp import web

from central.monitor import ALERT_KINDS
from central.repos import HasAudit, HasMonitor
from central.repos.audit import AuditEntry
from central.repos.monitor import ALERT_STATES, AlertRecord

from . import params as p
from .context import ApiContext, Handler, api_key, json_response, scope
from .openapi_parts import _WITH_400, _param, _ref
from .params import ApiError

ALERTS_MAX_LIMIT: Final = 1000


def alert_dict(a: AlertRecord) -> dict[str, Any]:
    return {"id": a.id, "hall": a.hall, "device": a.device, "kind": a.kind, "subject": a.subject,
            "detail": a.detail, "state": a.state,
            "raised_at": p.rfc3339(a.raised_at), "raised_at_us": a.raised_at,
            "cleared_at": p.rfc3339(a.cleared_at), "cleared_at_us": a.cleared_at,
            "acked_by": a.acked_by, "acked_at": p.rfc3339(a.acked_at), "acked_at_us": a.acked_at}


def _alert_id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise p.bad_request(f"alert id must be a positive integer, not {text[:40]!r}")
    return int(text)


class Needs(HasAudit, HasMonitor, Protocol):
    """The repositories this feature uses (the app passes :class:`central.repos.Repositories`)."""


def handlers(ctx: ApiContext, store: Needs) -> dict[str, Handler]:

    async def list_alerts(request: web.Request) -> web.Response:
        q = request.query
        state = p.choice(q, "state", ALERT_STATES, default="open")
        kind = p.choice(q, "kind", ALERT_KINDS)
        device = p.text(q, "device")
        limit = p.integer(q, "limit", low=1, high=ALERTS_MAX_LIMIT, default=100)
        assert state is not None and limit is not None
        hall, halls = scope(request)
        rows = await store.monitor.alerts(hall=hall, halls=halls, state=state, kind=kind, device=device, limit=limit)
        return json_response({"rows": [alert_dict(a) for a in rows]})

    async def ack(request: web.Request) -> web.Response:
        key = api_key(request)
        alert_id = _alert_id(request.match_info["id"])
        before = await store.monitor.alert(alert_id)
        if before is None or (key.halls is not None and before.hall not in key.halls):
            raise ApiError(404, "not_found", f"no alert {alert_id}")
        if before.acked_at is not None:
            raise ApiError(409, "conflict", f"alert {alert_id} was already acknowledged by {before.acked_by}")
        now = ctx.clock()
        if not await store.monitor.ack_alert(alert_id, by=key.id, at=now):
            raise ApiError(409, "conflict", f"alert {alert_id} was already acknowledged")
        after = await store.monitor.alert(alert_id)
        assert after is not None
        await store.audit.add_audit(AuditEntry(
            time=now, actor=key.id, action="alert.ack", target=f"hall/{after.hall}/alert/{alert_id}",
            before={"state": before.state, "acked_by": None, "acked_at": None},
            after={"state": after.state, "acked_by": after.acked_by, "acked_at": after.acked_at,
                   "kind": after.kind, "device": after.device, "subject": after.subject}))
        return json_response(alert_dict(after))

    return {"GET /alerts": list_alerts, "POST /alerts/{id}/ack": ack}


_ALERT_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "format": "int64",
                                                                      "minimum": 1}}
_TIME = {"type": "string", "format": "date-time", "nullable": True}
_MICROS = {"type": "integer", "format": "int64", "nullable": True}

PATHS: Final[dict[str, Any]] = {
    "/alerts": {
        "get": {
            "operationId": "listAlerts",
            "summary": "The alert list (hall and device trouble the monitor found), newest first.",
            "description": (
                "Central's monitor evaluates, every few seconds, the halls' agent status, devices' status "
                "and last contact, processing delay, link errors, doors open too long, faults (tilts), pending "
                "handpays, disabled machines and games, repeated command failures, and machines whose money "
                "comes from `missed` records above a threshold (`missed_money`: at least 5 % of bets and wins "
                "over the last hour, or 4 records in it; the agent under-polls the machine). An alert is raised once "
                "while its condition holds and cleared when it stops; `state`: `open` (holds, not acknowledged, "
                "the default), `acked`, `active` (either), `cleared`, `all`."),
            "parameters": [
                _param("hall"),
                {"name": "state", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": list(ALERT_STATES), "default": "open"}},
                {"name": "kind", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": list(ALERT_KINDS)}},
                {"name": "device", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": ALERTS_MAX_LIMIT, "default": 100}},
            ],
            "responses": {"200": {"description": "Alerts.", "content": {"application/json": {
                "schema": _ref("AlertList")}}}, **_WITH_400},
        },
    },
    "/alerts/{id}/ack": {
        "post": {
            "operationId": "ackAlert",
            "summary": "Acknowledge an alert (recorded once, with the API key and the time; audited).",
            "parameters": [_ALERT_ID],
            "responses": {
                "200": {"description": "The acknowledged alert.",
                        "content": {"application/json": {"schema": _ref("Alert")}}},
                "404": {"description": "No such alert in the key's halls (`not_found`).",
                        "content": {"application/json": {"schema": _ref("Error")}}},
                "409": {"description": "Already acknowledged (`conflict`).",
                        "content": {"application/json": {"schema": _ref("Error")}}},
                **_WITH_400,
            },
        },
    },
}

SCHEMAS: Final[dict[str, Any]] = {
    "Alert": {
        "type": "object",
        "required": ["id", "hall", "device", "kind", "subject", "detail", "state", "raised_at", "cleared_at",
                     "acked_by", "acked_at"],
        "properties": {
            "id": {"type": "integer", "format": "int64"}, "hall": {"type": "string"},
            "device": {"type": "string", "nullable": True},
            "kind": {"type": "string", "enum": list(ALERT_KINDS)},
            "subject": {"type": "string", "description": "What within the device: a door, a game, or ''."},
            "detail": {"type": "string"},
            "state": {"type": "string", "enum": ["open", "acked", "cleared"]},
            "raised_at": {**_TIME, "nullable": False}, "raised_at_us": {**_MICROS, "nullable": False},
            "cleared_at": _TIME, "cleared_at_us": _MICROS,
            "acked_by": {"type": "string", "nullable": True, "description": "API key id."},
            "acked_at": _TIME, "acked_at_us": _MICROS,
        },
    },
    "AlertList": {"type": "object", "required": ["rows"],
                  "properties": {"rows": {"type": "array", "items": _ref("Alert")}}},
}
