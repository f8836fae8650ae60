"""Pure functions that turn a run of events into rollup deltas and device updates.

Shared by every backend so the money rule lives in one place on central's side too: the amounts come
only from :func:`protocols.sync.money.contribution` (the rule the agent's normalizer also follows).

The rollup day is the hall's **gaming day** of ``agent_time`` (when the hall saw the event, not when
HQ received it, so a delayed batch lands on the day it happened), by the hall's
:class:`~protocols.sync.gamingday.DayRule` (time zone and day start; UTC midnight for a hall without
settings, which is what every rollup meant before per-hall settings). Besides the per-game daily
rollups a batch yields hourly ones (per device and local clock hour, for charts of today) and one
cell per device and gaming day (its money over all games and how many meter snapshots it took: the
reconciliation's list of rows, kept so a report reads its period and nothing else).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from central.eventtypes import PLAY_TYPES
from protocols.sync.gamingday import UTC_MIDNIGHT, DayIndex, DayRule, Span
from protocols.sync.money import ZERO, Contribution, contribution
from protocols.sync.vocabulary import game_key, is_missed

RollupKey = tuple[str, str, str, str]
"""(hall, device, game, day ``YYYY-MM-DD``); ``game`` is ``""`` for money outside a game (bills, tickets)."""

HourKey = tuple[str, str, int]
"""(device, gaming day ``YYYY-MM-DD``, the local hour's start in UTC microseconds)."""

DayKey = tuple[str, str]
"""(device, gaming day ``YYYY-MM-DD``)."""

def game_of(data: dict[str, Any]) -> str:
    """The game an event belongs to (``data.game`` as a string), or ``""``: the rollups' game key."""
    return game_key(data)


Mark = tuple[int, int, int, int, int, int]
"""(seq of a ``meters.snapshot``, bets, wins, rounds, cash_in, cash_out): a device's events money
counted up to and including that seq."""


@dataclass(slots=True)
class DeviceUpdate:
    """What a batch tells about one device: when it was last seen and, if stated, its kind and status.

    ``money`` is the device's *events* money in the batch (the reconciliation's rule: ``missed``
    records excluded) and ``marks`` its running total at each of its meter snapshots, counted from
    the batch's start; the store adds the device's total before the batch. ``last_play_seq`` is its
    newest play event (the floor view's "last played"), ``identity_seq`` its newest ``device.status``
    identity (the catalog's detected games, read by one lookup instead of a scan of every status).
    """

    first_seen: int
    last_seen: int
    last_seq: int
    kind: str | None = None
    online: bool | None = None
    enabled: bool | None = None
    last_play_seq: int | None = None
    money: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])
    marks: list[Mark] = field(default_factory=list)
    first_seq: int = 0
    """Its first event in the batch (with ``last_seq``: the batch's span of the device, schema 6)."""
    identity_seq: int | None = None


@dataclass(slots=True)
class BatchEffects:
    """Everything a run of events changes besides the events table."""

    rollups: dict[RollupKey, Contribution]
    devices: dict[str, DeviceUpdate]
    money_errors: list[tuple[int, str]]
    hours: dict[HourKey, list[int]] = field(default_factory=dict)
    """Per device and local hour: bets, wins, rounds, cash in, cash out (the rollups' money)."""
    days: dict[DayKey, list[int]] = field(default_factory=dict)
    """Per device and gaming day: the rollups' money (5 values) and its meter snapshots (a 6th)."""
    rule: DayRule = UTC_MIDNIGHT
    """The day rule the keys were computed with (the store recomputes if the hall's changed since)."""


class EventFacts(Protocol):
    """What :func:`effects` reads of an event: a :class:`protocols.sync.Event` or a stored row."""

    @property
    def seq(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def agent_time(self) -> int: ...
    @property
    def data(self) -> dict[str, Any]: ...


def _kind_hint(event: EventFacts) -> str | None:
    """Device kind: ``data.device_kind``/``data.kind`` on a status event, else inferred from activity."""
    data = event.data
    if event.type == "device.status":
        for key in ("device_kind", "kind"):
            value = data.get(key)
            if value in ("egm", "terminal"):
                return value
    if event.type.startswith("game."):
        return "egm"
    return None


Money = tuple[int, int, int, int, int]
"""bets, wins, rounds, cash in, cash out (the order of every accumulator here)."""


def _plus(acc: list[int], money: Money) -> None:
    acc[0] += money[0]
    acc[1] += money[1]
    acc[2] += money[2]
    acc[3] += money[3]
    acc[4] += money[4]


def _add(table: dict[Any, list[int]], key: Any, money: Money) -> None:
    """Add ``money`` to ``table[key]``, which its first money starts."""
    acc = table.get(key)
    if acc is None:
        table[key] = list(money)
    else:
        _plus(acc, money)


_LAST_SPANS: dict[DayRule, Span] = {}
"""The last hour span :func:`effects` keyed by, per day rule: a hall's next batch (a few ms later, on any
thread) starts with it instead of a time-zone conversion. A tuple swapped whole, so threads can share it."""
_NO_SPAN: Final = Span(0, 0, "", 0)


def effects(hall: str, events: Iterable[EventFacts], rule: DayRule = UTC_MIDNIGHT) -> BatchEffects:
    """Sum contributions per (hall, device, game, gaming day), per device and hour and per device and
    day, and collect device updates.

    An event whose money the shared rule refuses (ValueError) contributes zero and is reported in
    ``money_errors`` so the caller logs it; it is still stored, because dropping a signed event
    would break the chain and lose the record.

    The day and hour keys come from the span of instants sharing them (:meth:`DayIndex.span`): the
    events of a batch are nearby in time, so most reuse the previous event's keys after one comparison.
    """
    sums: dict[RollupKey, list[int]] = {}
    hours: dict[HourKey, list[int]] = {}
    cells: dict[DayKey, list[int]] = {}
    devices: dict[str, DeviceUpdate] = {}
    errors: list[tuple[int, str]] = []
    index = DayIndex(rule)
    lo, hi, day, hour = span = _LAST_SPANS.get(rule, _NO_SPAN)
    for event in events:
        kind, data, device, at = event.type, event.data, event.device, event.agent_time
        try:
            amount = contribution(kind, data)
        except ValueError as exc:
            errors.append((event.seq, str(exc)))
            amount = ZERO
        snapshot = kind == "meters.snapshot"
        if amount is not ZERO or snapshot:
            if not lo <= at < hi:
                lo, hi, day, hour = span = index.span(at)
            cell = cells.get((device, day))
            if cell is None:
                cell = cells[(device, day)] = [0, 0, 0, 0, 0, 0]
            if snapshot:
                cell[5] += 1
            if amount is not ZERO:
                money = (amount.bets, amount.wins, amount.rounds, amount.cash_in, amount.cash_out)
                _plus(cell, money)
                _add(sums, (hall, device, game_of(data), day), money)
                _add(hours, (device, day, hour), money)
        update = devices.get(device)
        if update is None:
            update = devices[device] = DeviceUpdate(at, at, event.seq, first_seq=event.seq)
        else:
            if at < update.first_seen:
                update.first_seen = at
            if at > update.last_seen:
                update.last_seen = at
            update.last_seq = event.seq
        if amount is not ZERO and not is_missed(kind, data):
            _plus(update.money, money)
        if kind in PLAY_TYPES:
            update.last_play_seq = event.seq
        elif snapshot:
            running = update.money
            update.marks.append((event.seq, running[0], running[1], running[2], running[3], running[4]))
        if update.kind is None:
            update.kind = _kind_hint(event)
        if kind == "device.status":
            if data.get("status") == "identity":
                update.identity_seq = event.seq
            online = data.get("online")
            if type(online) is bool:
                update.online = online
            enabled = data.get("enabled")
            if type(enabled) is bool:
                update.enabled = enabled
    if span is not _NO_SPAN:
        if len(_LAST_SPANS) > 1024:   # more rules than halls ever keep: start over rather than grow
            _LAST_SPANS.clear()
        _LAST_SPANS[rule] = span
    return BatchEffects({key: Contribution(*acc) for key, acc in sums.items()}, devices, errors, hours, cells, rule)
