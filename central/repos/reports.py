"""Rollups and reports: GGR by grouping, the hours of a gaming day, the rollup cells of the
catalog's reports, and the per-device reads of the meters-versus-events reconciliation.

The records and the repository's interface are backend-neutral: each backend implements
:class:`ReportRepository` with its own SQL (SQLite in :mod:`central.store`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from protocols.sync.money import Contribution

from .devices import DeviceEventRow

GROUP_BY: Final = ("device", "game", "hall", "day", "network")
"""GGR groupings of the store; ``network`` is one row (key ``network``) over every hall in scope.
``provider`` is built over ``game`` by the catalog (central/api/provider_reports.py)."""


@dataclass(frozen=True, slots=True)
class RollupCell:
    """The rollups of one (hall, device, game) summed over a period (the game catalog's reports)."""

    hall: str
    device: str
    game: str
    bets: int
    wins: int
    rounds: int
    cash_in: int
    cash_out: int


@dataclass(frozen=True, slots=True)
class PlacedCell:
    """The rollups of a period summed per hall, placed catalog game and SAS game number: what the
    catalog's money reports (GGR by provider, the game labels, hold, the provider report) group, in
    about one row per game of a hall instead of one per machine and game.

    ``game`` is the catalog game a device's placement puts on ``number``. Money no placement accounts
    for keeps its ``device`` (``game`` None) so the caller can match the device's detected identity
    (:func:`central.catalog.game_map`); money outside games (``number`` ``""``) has neither."""

    hall: str
    game: str | None
    number: str
    device: str | None
    bets: int
    wins: int
    rounds: int
    cash_in: int
    cash_out: int


@dataclass(frozen=True, slots=True)
class HourRow:
    """One local clock hour of a hall's (or a device's) gaming day."""

    hall: str
    day: str
    hour: int
    """UTC microseconds at which the local hour began."""
    bets: int
    wins: int
    rounds: int
    cash_in: int
    cash_out: int
    device: str | None = None

    @property
    def ggr(self) -> int:
        return self.bets - self.wins


@dataclass(frozen=True, slots=True)
class GgrRow:
    """One row of the GGR report; ``hall`` is set when the grouping is per device (device IDs are per hall)."""

    key: str
    bets: int
    wins: int
    rounds: int
    cash_in: int
    cash_out: int
    hall: str | None = None

    @property
    def ggr(self) -> int:
        return self.bets - self.wins

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"key": self.key, "bets": self.bets, "wins": self.wins, "ggr": self.ggr,
                               "rounds": self.rounds, "cash_in": self.cash_in, "cash_out": self.cash_out}
        if self.hall is not None:
            row["hall"] = self.hall
        return row


@runtime_checkable
class ReportRepository(Protocol):
    """Reads the rollups (GGR, hours) and the per-device rows the reconciliation needs."""

    async def ggr(self, group_by: str, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                  hall: str | None = None, halls: Sequence[str] | None = None) -> list[GgrRow]:
        """GGR from the rollups, grouped by ``device``/``game``/``hall``/``day``; days inclusive.

        ``halls`` restricts to a scope (an API key's halls); ``hall`` filters to one hall.
        """
        ...

    async def hourly(self, *, day: dt.date, hall: str | None = None, halls: Sequence[str] | None = None,
                     device: str | None = None) -> list[HourRow]:
        """GGR and rounds per local clock hour of one gaming day, per hall (and device if given), by
        hour: the charts of today."""
        ...

    async def rollup_cells(self, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> list[RollupCell]:
        """Rollups summed per (hall, device, game) over the days (inclusive)."""
        ...

    async def placed_cells(self, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> list[PlacedCell]:
        """The period's rollups summed per (hall, placed catalog game, number), the unplaced ones per
        device (see :class:`PlacedCell`); exactly the cells of :meth:`rollup_cells` regrouped."""
        ...

    async def meter_snapshots(self, hall: str, device: str, *, time_from: int, time_to: int) -> list[DeviceEventRow]:
        """The device's ``meters.snapshot`` events with agent_time in [from, to), and the newest one
        before ``time_from`` (the opening meters), by seq."""
        ...

    async def device_integration_events(self, hall: str, device: str, *, after_seq: int,
                                        through_seq: int | None = None) -> list[DeviceEventRow]:
        """The device's ``integration`` events with ``after_seq`` < seq (≤ ``through_seq``), by seq."""
        ...

    async def snapshot_after(self, hall: str, device: str, time: int) -> int | None:
        """The seq of the device's first ``meters.snapshot`` with agent_time ≥ ``time``, or None."""
        ...

    async def device_money(self, hall: str, device: str, ranges: Sequence[tuple[int, int]]) -> Contribution:
        """The money of the device's events with seq in any ``(after, through]`` of ``ranges``, by
        :func:`central.eventmoney.event_money` (the shared rule, ``missed`` records left out)."""
        ...

    # the same reads for many devices of one hall at once: a report page costs a few reads per hall,
    # not a few per device (issue 13)
    async def meter_snapshots_of(self, hall: str, devices: Sequence[str], *, time_from: int,
                                 time_to: int) -> dict[str, list[DeviceEventRow]]:
        """:meth:`meter_snapshots` of each of the hall's ``devices`` (a device with none is absent)."""
        ...

    async def snapshots_after(self, hall: str, devices: Sequence[str], time: int) -> dict[str, int]:
        """:meth:`snapshot_after` of each of ``devices`` (a device with none is absent)."""
        ...

    async def integration_events_of(self, hall: str,
                                    ranges: Mapping[str, tuple[int, int | None]]) -> dict[str, list[DeviceEventRow]]:
        """:meth:`device_integration_events` of each device in ``ranges`` (device → ``(after_seq,
        through_seq)``); a device with none is absent."""
        ...

    async def devices_money(self, hall: str,
                            wanted: Sequence[tuple[str, Sequence[tuple[int, int]]]]) -> list[Contribution]:
        """:meth:`device_money` of each ``(device, ranges)`` of ``wanted``, in order."""
        ...

    async def device_days(self, *, day_from: dt.date, day_to: dt.date, hall: str | None = None,
                          halls: Sequence[str] | None = None, device: str | None = None,
                          after: tuple[str, str, str] | None = None,
                          limit: int | None = None) -> dict[tuple[str, str, str], Contribution]:
        """Rollup money per (hall, device, gaming day ``YYYY-MM-DD``) with money or a meter snapshot in the
        days (inclusive; each hall's own gaming days), in (hall, device, day) order: at most ``limit``
        cells after the cell ``after`` (a page of the reconciliation)."""
        ...
