"""``PUT /halls/{hall}/settings``: a hall's time zone and gaming-day start (admin).

The gaming day is finance's unit ("GGR today", day close, reconciliation), so a change is rare and
heavy: the store re-buckets the hall's rollups from its events in the same transaction
(:meth:`central.repos.Store.set_day_rule`), the change is audited with before and after, and the
new settings reach the hall's agent as its standing data (its day-close snapshot moves with them).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from aiohttp import web

from central.repos import HasAudit, HasHalls
from central.repos.audit import AuditEntry
from protocols.sync.fields import HALL_RE
from protocols.sync.gamingday import DayRule, DayRuleError

from . import params as p
from .context import ApiContext, Handler, api_key, json_body, json_response
from .openapi_parts import _WITH_400
from .params import ApiError


def settings_of(record: Any) -> dict[str, Any]:
    return {"hall": record.id, "timezone": record.timezone, "gaming_day_start": record.gaming_day_start,
            "settings_version": record.settings_version}


class Needs(HasAudit, HasHalls, Protocol):
    """The repositories this feature uses (the app passes :class:`central.repos.Repositories`)."""


def handlers(ctx: ApiContext, store: Needs) -> dict[str, Handler]:

    async def put_settings(request: web.Request) -> web.Response:
        hall = request.match_info["hall"]
        if HALL_RE.fullmatch(hall) is None:
            raise p.bad_request(f"bad hall id {hall!r}")
        key = api_key(request)
        if key.halls is not None and hall not in key.halls:
            raise ApiError(403, "forbidden", f"hall {hall!r} is outside this key's halls")
        body = await json_body(request)
        unknown = sorted(set(body) - {"timezone", "gaming_day_start"})
        if unknown:
            raise p.bad_request(f"unknown field(s) for hall settings: {', '.join(unknown)}")
        before = await store.halls.get_hall(hall)
        if before is None:
            raise ApiError(404, "not_found", f"hall {hall!r} is not registered")
        try:
            rule = DayRule(body.get("timezone", before.timezone), body.get("gaming_day_start", before.gaming_day_start))
        except DayRuleError as exc:
            raise p.bad_request(str(exc)) from None
        after = await store.halls.set_day_rule(hall, rule, now=ctx.clock())
        if after is None:
            raise ApiError(404, "not_found", f"hall {hall!r} is not registered")
        if after.settings_version != before.settings_version:
            await store.audit.add_audit(AuditEntry(time=ctx.clock(), actor=key.id, action="hall.settings.update",
                                             target=f"hall/{hall}", before=settings_of(before),
                                             after=settings_of(after)))
            if ctx.on_hall_settings is not None:
                await ctx.on_hall_settings(hall)
        return json_response(settings_of(after))

    return {"PUT /halls/{hall}/settings": put_settings}


PATHS: Final[dict[str, Any]] = {
    "/halls/{hall}/settings": {"put": {
        "operationId": "putHallSettings",
        "summary": "Set a hall's IANA time zone and gaming-day start (HH:MM local).",
        "description": ("Every report, rollup and the reconciliation of the hall use its gaming day; a change "
                        "re-buckets the hall's stored rollups from its events, is audited, and is sent to the "
                        "hall's agent as standing data. Fields left out keep their value."),
        "parameters": [{"name": "hall", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": {
                "timezone": {"type": "string", "example": "Europe/Kyiv"},
                "gaming_day_start": {"type": "string", "example": "06:00"}}}}}},
        "responses": {"200": {"description": "The hall's settings now.", "content": {"application/json": {
            "schema": {"type": "object"}}}}, **_WITH_400},
    }},
}

SCHEMAS: Final[dict[str, Any]] = {}
