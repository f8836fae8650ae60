"""What one terminal's coordinator tells the pipeline: readings, link changes, command outcomes.

Like :mod:`agent.sas.facts`, every fact carries ``device`` (the configured id, e.g. ``term-01``),
``unit`` (the Modbus unit id), ``mono`` (``time.monotonic()``) and ``wall`` (``time.time()``, the
events' ``agent_time``). They go into the Modbus family's own sink; the runtime hands every fact of
that sink to the family's :class:`~agent.modbus.terminal.TerminalNormalizer` (agent.family).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.modbus import TerminalReading


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalFactBase:
    device: str
    unit: int
    mono: float
    wall: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalRead(TerminalFactBase):
    """One successful read of the whole map: the raw words and what they decode to."""

    registers: tuple[int, ...]
    reading: TerminalReading


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalLinkUp(TerminalFactBase):
    """The terminal answers again (``connect`` first time, ``recovered`` after a :class:`TerminalLinkDown`,
    ``heartbeat`` when a frozen heartbeat moves again)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalLinkDown(TerminalFactBase):
    """``missed`` consecutive polls failed (``reason`` ``unreachable``, ``timeout``, ``exception``,
    ``bad_map``), or the heartbeat register stopped moving (``reason`` ``stale``)."""

    missed: int
    reason: str
    detail: str
    last_seen_wall: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalCommandResult(TerminalFactBase):
    """The outcome of a control-register write (``disable_machine`` → 1, ``enable_machine`` → 2)."""

    action: str
    acked: bool
    detail: str = ""


TerminalFact = TerminalRead | TerminalLinkUp | TerminalLinkDown | TerminalCommandResult
TERMINAL_FACTS: tuple[type, ...] = (TerminalRead, TerminalLinkUp, TerminalLinkDown, TerminalCommandResult)

__all__ = ["TERMINAL_FACTS", "TerminalCommandResult", "TerminalFact", "TerminalFactBase", "TerminalLinkDown",
           "TerminalLinkUp", "TerminalRead"]
