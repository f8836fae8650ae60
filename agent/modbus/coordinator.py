"""One poll coordinator per terminal: schedule, back-off, staleness, and the facts it learns.

Like :class:`agent.sas.coordinator.MachineCoordinator`, the coordinator owns *when* to ask and the
:class:`~agent.modbus.adapter.ModbusAdapter` owns *how*. Every ``poll_interval`` (1 s by default) it
reads the whole register map in one request and hands a :class:`~agent.modbus.facts.TerminalRead` to
the facts queue; the readings are absolute counters, so nothing is lost while the terminal is away
(the next reading's delta covers the gap) and back-pressure (a full queue) just slows polling down.

Link state:

* ``offline_after`` consecutive failed polls (unreachable, timeout, exception response, registers
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
from dataclasses import dataclass, fields
from typing import Any

import structlog

from protocols.modbus import HALLSYNC_TERMINAL_V1, RegisterMap, decode
from protocols.modbus.registers import CONTROL_DISABLE, CONTROL_ENABLE, RegisterError

from ..tasks import stop_task
from .adapter import ModbusAdapter, ModbusDeviceError, ModbusError, ModbusTimeout, ModbusUnreachable
from .facts import TerminalCommandResult, TerminalFact, TerminalLinkDown, TerminalLinkUp, TerminalRead

log = structlog.get_logger("agent.modbus")


@dataclass(frozen=True)
class ModbusPollConfig:
    poll_interval: float = 1.0        # one read of the whole map per terminal (s)
    timeout: float = 1.0              # per request (s)
    offline_after: int = 3            # consecutive failed polls → offline
    probe_interval: float = 1.0       # first wait between probes while offline (s)
    probe_max_interval: float = 30.0  # back-off cap (s)
    stale_after: float = 10.0         # heartbeat frozen this long → stale (s); 0 disables
    command_timeout: float = 5.0      # a control write, connect included (s)

    @classmethod
    def from_mapping(cls, data: dict[str, object]) -> ModbusPollConfig:
        names = {f.name for f in fields(cls)}
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


class TerminalCoordinator:
    """Polls one terminal; ``start()`` spawns its task, ``stop()`` cancels it and closes the adapter."""

    def __init__(self, adapter: ModbusAdapter, *, device: str, regmap: RegisterMap = HALLSYNC_TERMINAL_V1,
                 config: ModbusPollConfig | None = None, facts: asyncio.Queue[Any] | None = None) -> None:
        self.adapter = adapter
        self.device = device
        self.regmap = regmap
        self.config = config or ModbusPollConfig()
        self.facts: asyncio.Queue[Any] = facts if facts is not None else asyncio.Queue(maxsize=1000)
        self.link_up = False
        self.stale = False
        self.last_seen_wall: float | None = None
        self.last_error: str | None = None
        self.last_reading: TerminalRead | None = None
        self.polls = 0
        self.errors = 0
        self.commands = 0
        self._reported: bool | None = None    # last link fact emitted: None (none yet), True up, False down
        self._ever_up = False
        self._failures = 0
        self._heartbeat: int | None = None
        self._heartbeat_mono = 0.0
        self._up_reason: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._log = log.bind(device=device, endpoint=adapter.endpoint.describe())

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"modbus-coordinator:{self.device}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
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

    # ---- the run loop ----------------------------------------------------------------------------
    async def _emit(self, fact: TerminalFact) -> None:
        await self.facts.put(fact)

    async def _run(self) -> None:
        backoff = self.config.probe_interval
        while True:
            started = time.monotonic()
            ok = await self.poll_once()
            if ok or self._failures < self.config.offline_after:
                backoff = self.config.probe_interval
                wait = self.config.poll_interval - (time.monotonic() - started)
            else:
                wait = backoff
                backoff = min(backoff * 2, self.config.probe_max_interval)
            await asyncio.sleep(max(0.0, wait))

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
        self._failures = 0
        self.last_error = None
        self.last_seen_wall = base["wall"]
        self._check_heartbeat(reading.values.get("heartbeat"), base["mono"])
        if self._reported is not True and not self.stale:
            reason = self._up_reason or ("recovered" if self._ever_up else "connect")
            self._up_reason = None
            self._ever_up = True
            self._reported = self.link_up = True
            self._log.info("terminal link up", reason=reason)
            await self._emit(TerminalLinkUp(**base, reason=reason))
        elif self.stale and self._reported is not False:
            self._reported, self.link_up = False, False
            self._log.warning("terminal heartbeat frozen: stale", seconds=self.config.stale_after)
            await self._emit(TerminalLinkDown(**base, missed=0, reason="stale",
                                              detail=f"heartbeat unchanged for {self.config.stale_after:g} s",
                                              last_seen_wall=self.last_seen_wall))
        read = TerminalRead(**base, registers=tuple(words), reading=reading)
        self.last_reading = read
        await self._emit(read)
        return True

    def _check_heartbeat(self, heartbeat: int | None, mono: float) -> None:
        if heartbeat is None or self.config.stale_after <= 0:
            return
        if heartbeat != self._heartbeat:
            if self.stale:
                self._log.info("terminal heartbeat moves again")
                self.stale = False
                if self._reported is False:
                    self._reported, self._up_reason = None, "heartbeat"
            self._heartbeat, self._heartbeat_mono = heartbeat, mono
            return
        if not self.stale and mono - self._heartbeat_mono >= self.config.stale_after:
            self.stale = True

    async def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self._failures += 1
        self.last_error = str(exc)
        reason = failure_reason(exc)
        if self._failures == 1:
            self._log.info("terminal poll failed", reason=reason, error=str(exc))
        if self._failures >= self.config.offline_after and self._reported is not False:
            self._reported, self.link_up = False, False
            self._log.warning("terminal offline", reason=reason, missed=self._failures, error=str(exc))
            await self._emit(TerminalLinkDown(**self._base(), missed=self._failures, reason=reason, detail=str(exc),
                                              last_seen_wall=self.last_seen_wall))
        # a new heartbeat baseline once it answers again (a terminal away for long is not "stale")
        self._heartbeat = None


__all__ = ["ModbusPollConfig", "TerminalCoordinator", "failure_reason"]
