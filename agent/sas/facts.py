"""Decoded device facts: what one SAS machine told the agent, in plain dataclasses.

A coordinator yields these, in the order it learned them, onto a bounded ``asyncio.Queue`` (see
:class:`~agent.sas.coordinator.MachineCoordinator`). They are *facts about the device*, not money
events: the next stage (normalizer) turns them into the event log's records. So they keep the SAS
meaning (codes, names, credits, the accounting denomination) and both clocks:

* ``mono`` — the agent's ``time.monotonic()`` when the bytes arrived (ordering, durations);
* ``wall`` — the agent's ``time.time()`` at the same moment (``agent_time`` of an event).

Every fact carries ``device`` (the configured id, e.g. ``egm-001``) and ``address`` (SAS 1..127).
Amounts: meter values are in the unit named by :attr:`Meter.unit` (``credits`` of the accounting
denomination, ``cents``, or ``count``); handpay and ticket amounts are in cents, as SAS sends them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from protocols.sas.exceptions import RteData


@dataclass(frozen=True, slots=True, kw_only=True)
class FactBase:
    device: str
    address: int
    mono: float
    wall: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkUp(FactBase):
    """The machine answers again (first contact, or after :class:`LinkDown`); ``reason`` says why
    we resynced: ``connect``, ``recovered`` or ``chirp`` (the EGM lost the link and asked for polls)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkDown(FactBase):
    """``missed`` consecutive polls went unanswered; events may be waiting in the EGM's buffer."""

    missed: int
    last_seen_wall: float | None


@dataclass(frozen=True, slots=True)
class GameIdentity:
    """One game of a multi-game machine (LP 53)."""

    number: int
    game_id: str
    paytable_id: str
    denomination_cents: int | None
    max_bet: int
    base_percent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity(FactBase):
    """Who the machine is (LP 1F, 54, 51, 56, 53 per enabled game, A0)."""

    game_id: str
    additional_id: str
    paytable_id: str
    base_percent: str
    accounting_denomination_cents: int | None
    max_bet: int
    sas_version: str
    serial: str
    game_count: int
    enabled_games: tuple[int, ...]
    games: tuple[GameIdentity, ...]
    fast_polling: bool          # LP A0 allows 40 ms polls
    rte: bool                   # real-time event reporting is active
    selected_game: int | None = None
    """LP 55, read last: the game the next wager is on (0 or None: unknown). Exception 8C reports
    only changes, so without this the games played before the first change have no number."""


@dataclass(frozen=True, slots=True)
class Meter:
    code: int
    name: str
    value: int
    unit: str  # "credits" (of the accounting denomination), "cents", or "count"
    read_mono: float | None = None
    """``time.monotonic()`` when the reply carrying this meter arrived. In RTE mode an EGM answers
    any poll with a queued event first (SAS §3.6), so a meter reply means its queue was empty: an
    event that reaches us after ``read_mono`` happened after the meter was read, one before it
    happened before. This is what orders a game's end against a snapshot read over several polls."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MetersSnapshot(FactBase):
    """Absolute meters read in one go; ``reason`` is ``schedule``, ``connect``, ``event:XX`` or
    ``request``; ``source`` the long poll used (``6F``, ``2F`` or ``1C``)."""

    reason: str
    source: str
    game: int
    accounting_denomination_cents: int | None
    meters: tuple[Meter, ...]

    def by_name(self) -> dict[str, int]:
        return {m.name: m.value for m in self.meters}

    def by_code(self) -> dict[int, int]:
        return {m.code: m.value for m in self.meters}


@dataclass(frozen=True, slots=True, kw_only=True)
class ExceptionFact(FactBase):
    """An exception (general-poll reply or RTE event), emitted once the host has implicitly
    ACKed it (the next different poll went out), so the EGM will not send it again."""

    code: int
    name: str
    rte: bool
    data: RteData | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HandpayInfo(FactBase):
    """LP 1B after exception 51: amount and partial pay in cents."""

    progressive_group: int
    level: int
    amount_cents: int
    partial_pay_cents: int
    reset_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TicketInfo(FactBase):
    """LP 3D after exception 3D: the printed cash-out ticket."""

    validation_number: int
    amount_cents: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockRead(FactBase):
    """The EGM's clock (LP 7E) against ours, read before we set it (``set`` True if LP 7F ACKed)."""

    egm_time: dt.datetime | None
    agent_time: dt.datetime
    drift_seconds: float | None
    set: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult(FactBase):
    """The outcome of a control long poll (enable/disable machine, game, bill acceptor)."""

    action: str
    game: int | None
    acked: bool
    detail: str = field(default="")


Fact = (LinkUp | LinkDown | Identity | MetersSnapshot | ExceptionFact | HandpayInfo | TicketInfo | ClockRead
        | CommandResult)

__all__ = [
    "ClockRead", "CommandResult", "ExceptionFact", "Fact", "FactBase", "GameIdentity", "HandpayInfo", "Identity",
    "LinkDown", "LinkUp", "Meter", "MetersSnapshot", "TicketInfo",
]
