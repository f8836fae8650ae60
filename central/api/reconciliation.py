"""``GET /reports/reconciliation``: meters versus events per machine and gaming day, over HTTP.

The judging is :mod:`central.reconcile` (pure); this module reads what it needs for the devices of
each hall in a page at once — the snapshots framing the period, the devices' ``integration`` events
(``missed`` records, meter resets, anomalies) and the events' money per window — and lists one row
per (hall, device, gaming day) on which the device had money in the rollups or a meter snapshot. It
is money, so it has the GGR report's roles.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from aiohttp import web

from central import reconcile as rc
from central.repos import HasHalls, HasReports
from central.repos.devices import DeviceEventRow
from protocols.sync.fields import HALL_RE, ID_RE
from protocols.sync.gamingday import UTC_MIDNIGHT, DayRule
from protocols.sync.money import ZERO, Contribution

from . import days as hall_days
from . import params as p
from .context import ApiContext, Handler, json_response, scope
from .openapi_parts import _WITH_400, _param, _ref

DEFAULT_PAGE: Final = 500
MAX_PAGE: Final = 5000
"""(hall, device, day) cells per page: a page reads a bounded number of rows whatever the period."""
_DAY_US: Final = 86_400_000_000


@dataclass(slots=True)
class _Device:
    """What one device of a hall's page reads: its days and their rollup money, snapshots, integration events."""

    days: list[dt.date]
    day_money: Mapping[dt.date, Contribution]
    snapshots: list[rc.Snapshot]
    integration: list[DeviceEventRow] = field(default_factory=list)

    def judged(self) -> tuple[set[int], list[rc.MissedRecord], list[int]]:
        """Its reset snapshots, ``missed`` records and anomaly seqs (from its integration events)."""
        resets = rc.reset_snapshots(self.snapshots, [r.seq for r in self.integration
                                                     if r.data.get("kind") == "meters_reset"])
        missed = [m for m in (rc.missed_from_event(r.seq, r.data) for r in self.integration) if m is not None]
        return resets, missed, [r.seq for r in self.integration if r.data.get("kind") == "anomaly"]


async def hall_rows(store: HasReports, hall: str, cells: Mapping[str, Mapping[dt.date, Contribution]],
                    rule: DayRule = UTC_MIDNIGHT) -> dict[str, list[rc.ReconRow]]:
    """Reconcile the devices of one hall: ``cells`` is device → its rollup money per gaming day of the
    page (by ``rule``; shown as unreconciled when there are no meters to compare with). The store is
    read a few times per hall and distinct period, not per device (issue 13): the snapshots, the
    snapshot a day past the period, the integration events, then the money of every window at once."""
    windows: dict[tuple[int, int], list[str]] = defaultdict(list)
    for device, money in cells.items():
        days = sorted(money)
        start, _ = rc.day_bounds(days[0] - dt.timedelta(days=1), rule)   # a day each side: see rc.widen
        _, end = rc.day_bounds(days[-1] + dt.timedelta(days=1), rule)
        windows[(start, end)].append(device)
    state: dict[str, _Device] = {}
    for (start, end), devices in windows.items():
        read = await store.reports.meter_snapshots_of(hall, devices, time_from=start, time_to=end)
        for device in devices:
            snapshots = [s for s in (rc.snapshot_from_event(r.seq, r.agent_time, r.data) for r in read.get(device, ()))
                         if s is not None]
            state[device] = _Device(sorted(cells[device]), cells[device], snapshots)
        metered = [d for d in devices if state[d].snapshots]
        if metered:
            # the agent's records about a snapshot follow it within its settle time: a snapshot a day past
            # the period bounds them (an old period's report does not read the device's later history)
            through = await store.reports.snapshots_after(hall, metered, end + _DAY_US)
            found = await store.reports.integration_events_of(
                hall, {d: (state[d].snapshots[0].seq, through.get(d)) for d in metered})
            for device, rows in found.items():
                state[device].integration = rows
    judged = {device: dev.judged() for device, dev in state.items()}
    plans: list[tuple[str, rc.DayPlan]] = []
    wanted: list[tuple[str, list[tuple[int, int]]]] = []
    for device, dev in state.items():
        resets = judged[device][0]
        for day in dev.days:
            plan = rc.plan_day(hall, device, day, dev.snapshots, resets=resets, rule=rule)
            plans.append((device, plan))
            if plan.segments:
                wanted.append((device, plan.counted))
                if plan.excluded:
                    wanted.append((device, plan.excluded))
    window_money = iter(await store.reports.devices_money(hall, wanted) if wanted else ())
    out: dict[str, list[rc.ReconRow]] = {device: [] for device in state}
    for device, plan in plans:
        dev = state[device]
        if not plan.segments:
            out[device].append(rc.judge(plan, ZERO, ZERO, unreconciled=dev.day_money.get(plan.day, ZERO)))
            continue
        events = rc.window_events(plan, next(window_money))
        unreconciled = next(window_money) if plan.excluded else ZERO
        resets, missed, anomalies = judged[device]
        row = rc.judge(plan, events, rc.attribute_missed(plan, missed), unreconciled=unreconciled,
                       anomalies=rc.judged_in(plan, dev.snapshots, anomalies))
        if "unexplained" in row.reasons and await _timing_explains(store, plan, dev.snapshots, resets, missed):
            row = rc.as_boundary_timing(row)
        out[device].append(row)
    return out


async def _timing_explains(store: HasReports, plan: rc.DayPlan, snapshots: list[rc.Snapshot], resets: set[int],
                           missed: list[rc.MissedRecord]) -> bool:
    """True when widening the window by a few snapshot intervals leaves no residual (rc.widen)."""
    previous: rc.DayPlan | None = None
    for steps in range(1, rc.BOUNDARY_STEPS + 1):
        wider = rc.widen(plan, snapshots, steps=steps, resets=resets)
        if wider is None or (previous is not None and wider.segments == previous.segments):
            return False   # nothing (more) to widen by
        check = rc.judge(wider, rc.window_events(wider, await store.reports.device_money(plan.hall, plan.device,
                                                                                wider.counted)),
                         rc.attribute_missed(wider, missed))
        if "unexplained" not in check.reasons:
            return True
        previous = wider
    return False


def _cursor(text: str | None) -> tuple[str, str, str] | None:
    """``after=HALL/DEVICE/DAY`` (a page's ``next_after``): neither IDs nor dates hold a ``/``."""
    if text is None:
        return None
    parts = text.split("/")
    if len(parts) != 3 or HALL_RE.fullmatch(parts[0]) is None or ID_RE.fullmatch(parts[1]) is None:
        raise p.bad_request(f"after must be a next_after of this report (HALL/DEVICE/YYYY-MM-DD), not {text!r}")
    try:
        dt.date.fromisoformat(parts[2])
    except ValueError:
        raise p.bad_request(f"after: bad day {parts[2]!r}") from None
    return parts[0], parts[1], parts[2]


class Needs(HasHalls, HasReports, Protocol):
    """The repositories this feature uses (the app passes :class:`central.repos.Repositories`)."""


def handlers(ctx: ApiContext, store: Needs) -> dict[str, Handler]:

    async def reconciliation(request: web.Request) -> web.Response:
        q = request.query
        hall, halls = scope(request)
        rules = hall_days.rules_in_scope(await store.halls.halls(), hall, halls)
        today = hall_days.today(rules, ctx.clock())
        day_to = p.date(q, "to") or today
        day_from = p.date(q, "from") or day_to
        if day_from > day_to:
            raise p.bad_request(f"from ({day_from}) is after to ({day_to})")
        if (day_to - day_from).days + 1 > rc.MAX_DAYS:
            raise p.bad_request(f"the period may span at most {rc.MAX_DAYS} days")
        device = p.text(q, "device")
        limit = p.integer(q, "limit", low=1, high=MAX_PAGE, default=DEFAULT_PAGE)
        assert limit is not None
        after = _cursor(p.text(q, "after"))
        cells = await store.reports.device_days(day_from=day_from, day_to=day_to, hall=hall, halls=halls, device=device,
                                        after=after, limit=limit)
        per_hall: dict[str, dict[str, dict[dt.date, Contribution]]] = defaultdict(dict)
        for (cell_hall, cell_device, day), money in cells.items():
            per_hall[cell_hall].setdefault(cell_device, {})[dt.date.fromisoformat(day)] = money
        rows: list[dict[str, Any]] = []
        for row_hall, devices in sorted(per_hall.items()):
            reconciled = await hall_rows(store, row_hall, devices, rules.get(row_hall, UTC_MIDNIGHT))
            for row_device in sorted(devices):
                rows.extend(row.as_dict() for row in reconciled[row_device])
        last = next(reversed(cells)) if cells else None
        return json_response({"currency": ctx.currency, "from": day_from.isoformat(), "to": day_to.isoformat(),
                              "days": hall_days.days_body(rules), "rows": rows,
                              "next_after": "/".join(last) if last is not None and len(cells) == limit else None})

    return {"GET /reports/reconciliation": reconciliation}


_LINE: Final = {
    "type": "object",
    "properties": {
        "meters": {"type": "integer", "format": "int64", "nullable": True,
                   "description": "How far the meters moved in the counted windows (null: not metered)."},
        "events": {"type": "integer", "format": "int64", "description": "What the events contributed."},
        "missed": {"type": "integer", "format": "int64", "description": "What `missed` records added."},
        "variance": {"type": "integer", "format": "int64", "nullable": True,
                     "description": "meters − events (before `missed` records)."},
        "variance_bp": {"type": "integer", "nullable": True,
                        "description": "variance / |meters| in basis points (1/100 %), half away from zero; "
                                       "null when the meters did not move."},
        "residual": {"type": "integer", "format": "int64", "nullable": True,
                     "description": "meters − events − missed: 0 unless the reason is `unexplained` or "
                                    "`boundary_timing`."},
    },
}
_MONEY5: Final = {"type": "object", "properties": {k: {"type": "integer", "format": "int64"}
                                                    for k in rc.QUANTITY_NAMES}}
_SNAP: Final = {"type": "object", "nullable": True,
                "properties": {"seq": {"type": "integer", "format": "int64"},
                               "agent_time_us": {"type": "integer", "format": "int64"}}}

PATHS: Final[dict[str, Any]] = {
    "/reports/reconciliation": {
        "get": {
            "operationId": "reconciliationReport",
            "summary": "Meters versus events per machine and gaming day: the variance in money and in %, and why.",
            "description": (
                "For each machine and gaming day (its hall's: time zone and day start in `days`), the movement "
                "of its meters between the day's opening snapshot (the last one before the day, else the "
                "first in it) and its closing snapshot (the last in it), against the money of the machine's "
                "events in between (by seq, by the shared money rule). `missed` records (the agent's account of "
                "what the meters showed but events did not) are their own column: after them `residual` must "
                "be 0. Wins are machine-paid plus hand-paid (coin out + jackpot meters). `reason`: `exact`, "
                "`missed_recorded`, `boundary_timing` (a game on the other side of the closing or opening "
                "snapshot than its events: the variance reverses on the neighbouring day), `meter_reset` (a RAM "
                "clear or meter reset inside the window: that interval is excluded and its events' money is "
                "`unreconciled`), `events_exceed_meters` (the agent flagged it), `unexplained` (a residual "
                "remains even with the neighbouring snapshot intervals), `single_snapshot`, `no_snapshot` "
                "(events but no meters: their money is `unreconciled`). `from`/`to` default to today; at most "
                "62 days."),
            "parameters": [
                _param("hall"),
                {"name": "device", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "from", "in": "query", "required": False, "description": "First gaming day (inclusive).",
                 "schema": {"type": "string", "format": "date"}},
                {"name": "to", "in": "query", "required": False, "description": "Last gaming day (inclusive).",
                 "schema": {"type": "string", "format": "date"}},
                {"name": "limit", "in": "query", "required": False,
                 "description": "Machine-days per page (default 500, at most 5000).",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 5000}},
                {"name": "after", "in": "query", "required": False,
                 "description": "The previous page's `next_after` (rows are by hall, device, day).",
                 "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "The report.", "content": {"application/json": {
                "schema": _ref("ReconciliationReport")}}}, **_WITH_400},
        },
    },
}

SCHEMAS: Final[dict[str, Any]] = {
    "ReconciliationReport": {
        "type": "object", "required": ["currency", "from", "to", "rows"],
        "properties": {
            "currency": {"type": "string"}, "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"}, "days": _ref("HallDays"),
            "next_after": {"type": "string", "nullable": True,
                           "description": "Give as `after` for the next page; null on the last page."},
            "rows": {"type": "array", "items": _ref("ReconciliationRow")},
        },
    },
    "ReconciliationRow": {
        "type": "object",
        "required": ["hall", "device", "day", "reason", "reasons", "quantities", "ggr", "unreconciled"],
        "properties": {
            "hall": {"type": "string"}, "device": {"type": "string"}, "day": {"type": "string", "format": "date"},
            "reason": {"type": "string", "enum": list(rc.REASONS)},
            "reasons": {"type": "array", "items": {"type": "string", "enum": list(rc.REASONS)}},
            "notes": {"type": "array", "items": {"type": "string"}},
            "opening": _SNAP, "closing": _SNAP, "snapshots_in_day": {"type": "integer"},
            "ggr": {**_LINE, "nullable": True, "description": "bets − wins, on each side."},
            "quantities": {"type": "object", "properties": {k: _LINE for k in rc.QUANTITY_NAMES}},
            "excluded": {"type": "array", "items": {"type": "object", "properties": {
                "after_seq": {"type": "integer", "format": "int64"},
                "through_seq": {"type": "integer", "format": "int64"}}}},
            "unreconciled": {**_MONEY5, "description": "Events' money the meters could not check."},
        },
    },
}
