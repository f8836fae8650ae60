"""Monitoring and alerts: the monitor's cursors and device conditions, what the alert
evaluator reads (:class:`MonitorInputs`), and the alerts themselves.

The records and the repository's interface are backend-neutral: each backend implements
:class:`MonitorRepository` with its own SQL (SQLite in :mod:`central.store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from .devices import DeviceCondition, DeviceRecord
from .halls import HallRecord

ALERT_STATES: Final = ("open", "acked", "cleared", "active", "all")
"""``open``: holds, not acknowledged; ``acked``: holds, acknowledged; ``active``: holds (either);
``cleared``: its condition ended; ``all``."""


@dataclass(frozen=True, slots=True)
class AlertDraft:
    """A condition that holds now and must have an open alert, identified by (hall, device, kind, subject):
    while an alert with that identity is open, the same condition raises nothing new."""

    hall: str
    device: str | None
    kind: str
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert as stored: raised once, cleared when its condition stopped, acknowledged by an API key."""

    id: int
    hall: str
    device: str | None
    kind: str
    subject: str
    detail: str
    raised_at: int
    cleared_at: int | None
    acked_by: str | None
    acked_at: int | None

    @property
    def state(self) -> str:
        if self.cleared_at is not None:
            return "cleared"
        return "open" if self.acked_at is None else "acked"


@dataclass(frozen=True, slots=True)
class DeviceMissed:
    """How much of one machine's recent money its ``missed`` records carry (issue 12: a machine the
    agent under-polls loses per-game detail to its exception queue, and its meters then bring the
    money back as ``missed`` records; see :func:`central.monitor.evaluate`).

    Counted from the machine's last meter snapshot before the window began: ``records`` ``missed``
    records, carrying ``missed`` of bets plus wins, out of ``turnover`` bets plus wins in all (events
    and ``missed`` records together)."""

    records: int
    missed: int
    turnover: int
    since: int
    """agent_time where the counting starts (that snapshot's, or the window's start without one)."""


@dataclass(frozen=True, slots=True)
class MonitorInputs:
    """The store's state the alert evaluator reads at one moment (see :mod:`central.monitor`).

    ``delays``: per hall, the largest ``central_time - agent_time`` among its newest events stored
    recently; ``link_errors``: per hall, recent integration-log rows by kind; ``failed_commands``:
    per (hall, device), commands that failed recently; ``switches``: the newest *applied*
    enable/disable command per (hall, device, game or None) as (action, updated_at); ``missed``: per
    (hall, device) that central logged a ``missed`` record for recently, the money they carry."""

    halls: list[HallRecord]
    devices: list[DeviceRecord]
    delays: dict[str, int]
    link_errors: dict[str, dict[str, int]]
    failed_commands: dict[tuple[str, str], int]
    switches: dict[tuple[str, str, str | None], tuple[str, int]]
    missed: dict[tuple[str, str], DeviceMissed] = field(default_factory=dict)


@runtime_checkable
class MonitorRepository(Protocol):
    """The monitor's state, its inputs and the alerts it raises and clears."""

    async def monitor_state(self) -> tuple[dict[str, int], list[DeviceCondition]]:
        """The monitor's cursor per hall (the last seq it has read) and the device conditions it keeps."""
        ...

    async def monitor_events(self, hall: str, *, after_seq: int,
                             through_seq: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The hall's events with seq in (after, through] that can change a device condition (doors,
        errors, status, handpays, service) as dicts (``seq``, ``device``, ``type``, ``agent_time``,
        ``data``) by seq, and per device the seq of its last game event in that range — play is the
        bulk of the events and only its last occurrence matters to the conditions."""
        ...

    async def monitor_inputs(self, *, delay_since: int, link_since: int, failures_since: int,
                             missed_since: int | None = None) -> MonitorInputs:
        """What the alert evaluator reads (see :class:`MonitorInputs`); ``*_since`` bound "recent"
        (``missed_since`` None: no :attr:`MonitorInputs.missed`)."""
        ...

    async def sync_alerts(self, drafts: Sequence[AlertDraft], *, now: int, cursors: dict[str, int],
                          conditions: Sequence[DeviceCondition],
                          hold: Sequence[tuple[str, str]] = ()) -> tuple[int, int]:
        """In one transaction: raise an alert for each draft without an open one, clear open alerts whose
        draft is gone — except those of a held (hall, kind) — store the cursors and replace the
        conditions. Returns (raised, cleared)."""
        ...

    async def alerts(self, *, hall: str | None = None, halls: Sequence[str] | None = None, state: str = "open",
                     kind: str | None = None, device: str | None = None, limit: int = 100) -> list[AlertRecord]:
        """Alerts in :data:`ALERT_STATES` ``state``, newest first; ``halls`` restricts to a scope."""
        ...

    async def alert(self, alert_id: int) -> AlertRecord | None:
        """One alert, or None."""
        ...

    async def ack_alert(self, alert_id: int, *, by: str, at: int) -> bool:
        """Record the acknowledgement once; False (nothing changed) if unknown or already acknowledged."""
        ...
