"""``GET /floor?hall=``: every machine of one hall with its state (playing, idle, disabled, door open,
tilt, offline), for the dashboard's floor view.

The monitor's stored device conditions (as of its cursor), the events after that cursor, each
device's newest game and the applied enable/disable commands are read; the pure
:func:`central.floor.derive` decides. A status view, not money: the roles that read devices
(admin, operator, viewer, technician — its halls only).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from aiohttp import web

from central.floor import PLAYING_WINDOW_US, STATES, MachineState, derive
from central.repos import HasDevices, HasHalls, HasMonitor
from central.repos.devices import DeviceCondition
from protocols.sync.fields import HALL_RE

from . import params as p
from .context import ApiContext, Handler, json_response, require_hall_in_scope
from .openapi_parts import _WITH_400, _ref
from .params import ApiError

_US: Final = 1_000_000
MAX_TAIL_EVENTS: Final = 100_000
"""Seqs after the monitor's cursor read per request at most. ``hall-central serve`` runs the monitor every
15 s, so the tail is seconds of events; with the monitor off or far behind the floor reads the newest
100k seqs and says it is not ``complete`` (an older door or tilt may be missing)."""


def machine_dict(m: MachineState) -> dict[str, Any]:
    return {"device": m.device, "kind": m.kind, "state": m.state, "flags": list(m.flags), "detail": m.detail,
            "online": m.online, "enabled": m.enabled, "open_doors": list(m.open_doors),
            "disabled_games": list(m.disabled_games),
            "last_seen": p.rfc3339(m.last_seen), "last_seen_us": m.last_seen,
            "last_play": p.rfc3339(m.last_play), "last_play_us": m.last_play}


class Needs(HasDevices, HasHalls, HasMonitor, Protocol):
    """The repositories this feature uses (the app passes :class:`central.repos.Repositories`)."""


def handlers(ctx: ApiContext, store: Needs) -> dict[str, Handler]:

    async def floor(request: web.Request) -> web.Response:
        hall = p.text(request.query, "hall")
        if hall is None or HALL_RE.match(hall) is None:
            raise p.bad_request("hall is required: a hall ID ([A-Za-z0-9_-]{1,64})")
        require_hall_in_scope(request, hall)
        record = await store.halls.get_hall(hall)
        if record is None:
            raise ApiError(404, "not_found", f"no hall {hall!r}")
        cursors, stored = await store.monitor.monitor_state()
        cursor = cursors.get(hall, 0)
        conditions: dict[str, list[DeviceCondition]] = {}
        for c in stored:
            if c.hall == hall:
                conditions.setdefault(c.device, []).append(c)
        reads = await store.devices.floor_reads(hall, after_seq=cursor, max_events=MAX_TAIL_EVENTS)
        now = ctx.clock()
        machines = [derive(d, reads.events.get(d.id, ()), now=now, hall_online=record.online,
                           conditions=conditions.get(d.id, ()), last_play=reads.last_play.get(d.id),
                           switches=reads.switches.get(d.id), switched_at=reads.switched_at.get(d.id))
                    for d in await store.devices.devices(hall=hall)]
        counts = dict.fromkeys(STATES, 0)
        for m in machines:
            counts[m.state] += 1
        return json_response({"hall": hall, "hall_online": record.online, "at": p.rfc3339(now), "at_us": now,
                              "playing_window_s": PLAYING_WINDOW_US // _US, "counts": counts,
                              "complete": reads.from_seq == cursor, "machines": [machine_dict(m) for m in machines]})

    return {"GET /floor": floor}


_NULL_TIME = {"type": "string", "format": "date-time", "nullable": True}
_NULL_MICROS = {"type": "integer", "format": "int64", "nullable": True}

PATHS: Final[dict[str, Any]] = {
    "/floor": {"get": {
        "operationId": "floor",
        "summary": "Every machine of a hall with its state now: " + ", ".join(STATES) + ".",
        "description": (
            "Derived from the stored events: `offline` (the agent lost the machine, or the hall's agent is "
            "offline), `door_open` (a door opened and not closed), `tilt` (a machine fault until it plays "
            "again), `disabled` (an applied disable command, a terminal's own flag, or out of service), "
            "`playing` (a game event within `playing_window_s`), else `idle`. `state` is the most urgent; "
            "`flags` lists every condition that holds (and `handpay_pending`). `complete` is false when the "
            "monitor is far behind and only the newest events were read (an older open door may be missing)."),
        "parameters": [{"name": "hall", "in": "query", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The floor.", "content": {"application/json": {
            "schema": _ref("Floor")}}},
            "404": {"description": "No such hall (`not_found`).",
                    "content": {"application/json": {"schema": _ref("Error")}}},
            **_WITH_400}}},
}

SCHEMAS: Final[dict[str, Any]] = {
    "FloorMachine": {
        "type": "object",
        "required": ["device", "kind", "state", "flags", "detail", "online", "enabled", "open_doors",
                     "disabled_games", "last_seen", "last_play"],
        "properties": {
            "device": {"type": "string"}, "kind": {"type": "string"},
            "state": {"type": "string", "enum": list(STATES)},
            "flags": {"type": "array", "items": {"type": "string"}},
            "detail": {"type": "string"},
            "online": {"type": "boolean", "nullable": True}, "enabled": {"type": "boolean"},
            "open_doors": {"type": "array", "items": {"type": "string"}},
            "disabled_games": {"type": "array", "items": {"type": "string"}},
            "last_seen": {**_NULL_TIME, "nullable": False}, "last_seen_us": {**_NULL_MICROS, "nullable": False},
            "last_play": _NULL_TIME, "last_play_us": _NULL_MICROS,
        },
    },
    "Floor": {
        "type": "object",
        "required": ["hall", "hall_online", "at", "playing_window_s", "counts", "complete", "machines"],
        "properties": {
            "hall": {"type": "string"}, "hall_online": {"type": "boolean", "nullable": True},
            "at": {"type": "string", "format": "date-time"}, "at_us": {"type": "integer", "format": "int64"},
            "playing_window_s": {"type": "integer"}, "complete": {"type": "boolean"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "machines": {"type": "array", "items": _ref("FloorMachine")},
        },
    },
}
