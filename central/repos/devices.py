"""Devices and the floor: the devices seen in each hall's events, the conditions the monitor
keeps for them, and what the floor view (:func:`central.floor.derive`) reads of a hall.

The records and the repository's interface are backend-neutral: each backend implements
:class:`DeviceRepository` with its own SQL (SQLite in :mod:`central.store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device as seen in its hall's events (there is no device registry yet)."""

    id: str
    hall: str
    kind: str
    online: bool | None
    enabled: bool
    first_seen: int
    last_seen: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class DeviceEventRow:
    """One stored event of a device, reduced to what the reconciliation reads."""

    seq: int
    agent_time: int
    type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeviceCondition:
    """A state a device's events put it in (a door open, a fault, a pending handpay) and since when
    (agent time); kept by the monitor so a restart does not forget a door that is still open."""

    hall: str
    device: str
    name: str
    since: int
    detail: str


@dataclass(frozen=True, slots=True)
class FloorReads:
    """What the floor view (:mod:`central.floor`) reads of one hall besides its devices and the
    monitor's stored conditions.

    ``events``: per device, its events of :data:`central.floor.CONDITION_TYPES` with seq in
    (``from_seq``, ``newest_seq``] and its newest game event if in that range, by seq; ``last_play``:
    per device, the agent time of its newest game event; ``switches``: per device, the newest applied
    enable (True) / disable (False) command of the machine (key None) and of each game (key: game),
    and ``switched_at`` when central stored its applied result (same keys), so that an older event in
    the tail does not undo it. ``from_seq`` is above the caller's ``after_seq`` when more than
    ``max_events`` seqs followed it."""

    events: dict[str, list[DeviceEventRow]]
    last_play: dict[str, int]
    switches: dict[str, dict[str | None, bool]]
    from_seq: int
    newest_seq: int
    switched_at: dict[str, dict[str | None, int]] = field(default_factory=dict)


@runtime_checkable
class DeviceRepository(Protocol):
    """Reads the devices of the halls and what the floor view folds."""

    async def devices(self, *, hall: str | None = None, halls: Sequence[str] | None = None) -> list[DeviceRecord]:
        """Devices by (hall, id)."""
        ...

    async def floor_reads(self, hall: str, *, after_seq: int, max_events: int) -> FloorReads:
        """What the floor view of ``hall`` folds after seq ``after_seq`` (the monitor's cursor), reading
        at most the hall's newest ``max_events`` seqs (see :class:`FloorReads`)."""
        ...
