"""One poll coordinator per terminal: schedule, back-off, staleness, and the facts it learns.

A :class:`agent.polling.PollCoordinator` (the loop, back-off, link state and staleness every family
shares) owns *when* to ask and the :class:`~agent.modbus.adapter.ModbusAdapter` owns *how*. Every
``poll_interval`` (1 s by default) it reads the whole register map in one request and hands a
:class:`~agent.modbus.facts.TerminalRead` to the facts queue; the readings are absolute counters, so
nothing is lost while the terminal is away (the next reading's delta covers the gap) and
back-pressure (a full queue) just slows polling down.

Link state:

* ``link_down_after`` consecutive failed polls (unreachable, timeout, exception response, registers
  that do not fit the map) → one :class:`~agent.modbus.facts.TerminalLinkDown`; from then on the
  coordinator probes with back-off (``probe_interval`` doubling up to ``probe_max_interval``);
* the first good read after that (or the very first one) → :class:`~agent.modbus.facts.TerminalLinkUp`;
* staleness: a terminal that answers but whose heartbeat register has not moved for ``stale_after``
  seconds is frozen → ``TerminalLinkDown(reason="stale")``; readings keep flowing (its counters are
  still the truth), and ``TerminalLinkUp(reason="heartbeat")`` when the heartbeat moves again.

Commands: :meth:`TerminalCoordinator.disable_machine` / :meth:`enable_machine` write the control
register (1 / 2) and return (and emit) a :class:`~agent.modbus.facts.TerminalCommandResult`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, fields
from typing import Any

import structlog

from protocols.modbus import HALLSYNC_TERMINAL_V1, RegisterMap, decode
from protocols.modbus.registers import CONTROL_DISABLE, CONTROL_ENABLE, RegisterError

from ..polling import FactSink, PollCoordinator, PollOptions, Staleness
from .adapter import ModbusAdapter, ModbusDeviceError, ModbusError, ModbusTimeout, ModbusUnreachable
from .facts import TerminalCommandResult, TerminalFact, TerminalLinkDown, TerminalLinkUp, TerminalRead

log = structlog.get_logger("agent.modbus")


@dataclass(frozen=True)
class ModbusPollConfig(PollOptions):
    """A terminal's polling; the link and back-off options are :class:`agent.polling.PollOptions`'
    (``offline_after``, this config's name for ``link_down_after`` before issue 15, is still accepted)."""

    poll_interval: float = 1.0        # one read of the whole map per terminal (s)
    link_down_after: int = 3          # consecutive failed polls → offline
    probe_interval: float = 1.0       # first wait between probes while offline (s)
    probe_max_interval: float = 30.0  # back-off cap (s)
    command_timeout: float = 5.0      # a control write, connect included (s)
    timeout: float = 1.0              # per request (s)
    stale_after: float = 10.0         # heartbeat frozen this long → stale (s); 0 disables
    offline_after: InitVar[int | None] = None

    def __post_init__(self, offline_after: int | None) -> None:
        if offline_after is not None:
            object.__setattr__(self, "link_down_after", offline_after)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> ModbusPollConfig:
        names = {f.name for f in fields(cls)} | {"offline_after"}
        return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, ModbusUnreachable):
        return "unreachable"
    if isinstance(exc, ModbusTimeout):
        return "timeout"
    if isinstance(exc, ModbusDeviceError):
        return "exception"
    if isinstance(exc, RegisterError):
        return "bad_map"
    return "error"


class TerminalCoordinator(PollCoordinator):
    """Polls one terminal; ``start()`` spawns its task, ``stop()`` cancels it and closes the adapter."""

    task_name = "modbus-coordinator"

    def __init__(self, adapter: ModbusAdapter, *, device: str, regmap: RegisterMap = HALLSYNC_TERMINAL_V1,
                 config: ModbusPollConfig | None = None, facts: FactSink | None = None) -> None:
        self.config = config or ModbusPollConfig()
        super().__init__(device, self.config, facts)
        self.adapter = adapter
        self.regmap = regmap
        self.heartbeat = Staleness(self.config.stale_after)
        self.last_reading: TerminalRead | None = None
        self.polls = 0
        self.errors = 0
        self.commands = 0
        self._up_reason: str | None = None
        self._log = log.bind(device=device, endpoint=adapter.endpoint.describe())

    @property
    def stale(self) -> bool:
        return self.heartbeat.stale

    async def _stopped(self) -> None:
        await self.adapter.close()

    @property
    def unit(self) -> int:
        return self.adapter.endpoint.unit

    def _base(self) -> dict[str, Any]:
        return {"device": self.device, "unit": self.unit, "mono": time.monotonic(), "wall": time.time()}

    # ---- commands --------------------------------------------------------------------------------
    async def disable_machine(self) -> TerminalCommandResult:
        """Write 1 to the control register: the terminal stops taking bets (clears status bit 0)."""
        return await self._control("disable_machine", CONTROL_DISABLE)

    async def enable_machine(self) -> TerminalCommandResult:
        """Write 2 to the control register: the terminal takes bets again."""
        return await self._control("enable_machine", CONTROL_ENABLE)

    async def _control(self, action: str, value: int) -> TerminalCommandResult:
        address = self.regmap.field("control").address
        self.commands += 1
        try:
            await asyncio.wait_for(self.adapter.write_register(address, value), self.config.command_timeout)
            acked, detail = True, ""
        except TimeoutError:
            acked, detail = False, f"no answer within {self.config.command_timeout:g} s"
        except ModbusError as exc:
            acked, detail = False, str(exc)
        result = TerminalCommandResult(**self._base(), action=action, acked=acked, detail=detail)
        self._log.info("command", action=action, acked=acked, detail=detail)
        try:
            self.facts.put_nowait(result)
        except asyncio.QueueFull:
            self._log.warning("facts queue full; command result not recorded", action=action)
        return result

    # ---- the run loop (agent.polling): every turn reads the map ----------------------------------------
    async def _emit(self, fact: TerminalFact) -> None:
        await self.facts.put(fact)

    async def _poll(self) -> bool:
        return await self.poll_once()

    async def _probe(self) -> bool:
        return await self.poll_once()

    @property
    def backing_off(self) -> bool:
        """Offline (``link_down_after`` failures in a row): back off. A stale terminal answers: it
        is read at the poll interval."""
        return self.link.failures >= self.config.link_down_after

    async def poll_once(self) -> bool:
        """One read of the map and the facts it implies; True if the terminal answered sensibly."""
        self.polls += 1
        try:
            words = await self.adapter.read_holding(self.regmap.start, self.regmap.span)
            reading = decode(self.regmap, words)
        except (ModbusError, RegisterError) as exc:
            await self._failed(exc)
            return False
        base = self._base()
        self.link.answered(base["wall"])
        self.last_error = None
        if self.heartbeat.observe(reading.values.get("heartbeat"), base["mono"]):
            self._log.info("terminal heartbeat moves again")
            if self.link.reported is False:
                self.link.reported, self._up_reason = None, "heartbeat"
        if self.link.reported is not True and not self.stale:
            reason = self._up_reason or self.link.up_reason()
            self._up_reason = None
            self.link.came_up()
            self._log.info("terminal link up", reason=reason)
            await self._emit(TerminalLinkUp(**base, reason=reason))
        elif self.stale and self.link.reported is not False:
            self.link.went_down()
            self._log.warning("terminal heartbeat frozen: stale", seconds=self.config.stale_after)
            await self._emit(TerminalLinkDown(**base, missed=0, reason="stale",
                                              detail=f"heartbeat unchanged for {self.config.stale_after:g} s",
                                              last_seen_wall=self.last_seen_wall))
        read = TerminalRead(**base, registers=tuple(words), reading=reading)
        self.last_reading = read
        await self._emit(read)
        return True

    async def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        reason = failure_reason(exc)
        went_down = self.link.failed(str(exc))
        if self.link.failures == 1:
            self._log.info("terminal poll failed", reason=reason, error=str(exc))
        if went_down:
            self._log.warning("terminal offline", reason=reason, missed=self.link.failures, error=str(exc))
            await self._emit(TerminalLinkDown(**self._base(), missed=self.link.failures, reason=reason,
                                              detail=str(exc), last_seen_wall=self.last_seen_wall))
        # a new heartbeat baseline once it answers again (a terminal away for long is not "stale")
        self.heartbeat.forget()


__all__ = ["ModbusPollConfig", "TerminalCoordinator", "failure_reason"]
