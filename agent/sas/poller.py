"""Many machines, few ports: build one :class:`SasLine` per port and one coordinator per address.

This is what ``hall-agent run`` (agent.runtime) and the benchmark use. Devices come from the
simulator's / installer's ``devices.toml`` (``[[devices]]`` with ``id``, ``protocol = "sas"``,
``port``, ``address``, ``framing``, optional ``transport``).

Scheduling (issue 12, measured by ``bench/sas_lines.py``): each line is its own task, serving its
coordinators' polls in submission order, so a slow, garbling or dead machine costs line time only on
its own port — the other lines keep their cadence exactly as without it. What all lines share is the
event loop: CPU work anywhere in the agent delays every machine's polls alike, by about the length
of the burst. :class:`LoopLag` measures that, so ``/metrics`` tells an overloaded line (cadence
misses on one port, its ``busy_seconds`` near 1 s/s) from a starved process (misses on every port
together with loop lag).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols.devices import DeviceList, SasDeviceSpec
from protocols.devices import load_devices as read_devices
from protocols.metrics import Histogram

from ..polling import FactSink
from ..tasks import stop_task
from ..transport import default_kind, make_transport
from ..transport.base import Framing
from . import facts as F
from .config import PollConfig
from .coordinator import MachineCoordinator
from .line import SasLine
from .transaction import PTY_TIMING, Timing

LOOP_LAG_PERIOD = 0.02
"""How often the loop-lag probe wakes (50 times a second: well under a thousandth of a core)."""
LOOP_LAG_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.1, 0.2, 0.5, 1.0, 2.5)
"""Seconds; 0.04 is the fastest general-poll interval: a lag above it costs machines a poll slot."""


class LoopLag:
    """How late the event loop runs a timer due every :data:`LOOP_LAG_PERIOD` seconds.

    Every line and coordinator of the agent shares this loop, so this is the one delay a busy line
    cannot cause and a CPU-starved process (a long synchronous burst in the pipeline, a starved
    machine) always does; exposed as ``hallsync_agent_event_loop_lag_seconds``."""

    def __init__(self, period: float = LOOP_LAG_PERIOD) -> None:
        self.period = period
        self.histogram = Histogram(
            "hallsync_agent_event_loop_lag_seconds", "How late the agent's event loop ran a timer (sampled "
            f"every {period:g} s). Every serial line shares the loop: lag delays every machine's polls alike.",
            buckets=LOOP_LAG_BUCKETS)
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def observe(self, lag: float) -> None:
        lag = max(0.0, lag)
        self.histogram.observe(lag)
        if lag > self.worst:
            self.worst = lag

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sas-loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.period)
            self.observe(loop.time() - before - self.period)


@dataclass(frozen=True)
class SasDevice:
    id: str
    port: str
    address: int
    framing: Framing = "marks"
    transport: str | None = None  # None: from the path (/dev/pts/* → pty, else uart)


def sas_devices(devices: DeviceList) -> list[SasDevice]:
    """The SAS machines of a checked device list (protocols.devices; other protocols are skipped)."""
    return [from_spec(spec) for spec in devices.sas]


def from_spec(spec: SasDeviceSpec) -> SasDevice:
    return SasDevice(id=spec.id, port=spec.port, address=spec.address, framing=spec.framing,
                     transport=spec.transport)


def load_devices(path: str | Path) -> list[SasDevice]:
    """The SAS devices of a devices.toml (other protocols are skipped); DevicesError says what is wrong."""
    return sas_devices(read_devices(path))


def timing_for(kind: str, response_timeout: float | None = None, gap_timeout: float | None = None) -> Timing:
    """Spec timing on a UART, more slack on a pty; explicit values win."""
    base = PTY_TIMING if kind == "pty" else Timing()
    return Timing(response_timeout if response_timeout is not None else base.response_timeout,
                  gap_timeout if gap_timeout is not None else base.gap_timeout)


class SasPoller:
    """Owns the lines and coordinators of a set of devices, and the sink their facts go to: ``facts``
    (the runtime gives the SAS family's), else a queue of its own."""

    def __init__(self, devices: list[SasDevice], config: PollConfig | None = None, *,
                 timing: Timing | None = None, queue_size: int = 10_000, facts: FactSink | None = None) -> None:
        self.config = config or PollConfig()
        self.facts: Any = facts if facts is not None else asyncio.Queue[F.Fact](maxsize=queue_size)
        self.lines: dict[str, SasLine] = {}
        self.coordinators: dict[str, MachineCoordinator] = {}
        self.loop_lag = LoopLag()
        for dev in devices:
            line = self.lines.get(dev.port)
            if line is None:
                kind = dev.transport or default_kind(dev.port)
                line = SasLine(make_transport(dev.port, kind, dev.framing), timing or timing_for(kind))
                self.lines[dev.port] = line
            self.coordinators[dev.id] = MachineCoordinator(line, dev.address, device=dev.id,
                                                           config=self.config, facts=self.facts)

    async def start(self, *, tolerate_missing_ports: bool = False) -> None:
        """Open every line (see :meth:`SasLine.start` for ``tolerate_missing_ports``), then poll."""
        for line in self.lines.values():
            await line.start(tolerate_missing=tolerate_missing_ports)
        for coord in self.coordinators.values():
            await coord.start()
        self.loop_lag.start()

    async def stop(self) -> None:
        """Coordinators first (no new polls), then lines (which confirm what they hold)."""
        await self.loop_lag.stop()
        for coord in self.coordinators.values():
            await coord.stop()
        for line in self.lines.values():
            with contextlib.suppress(Exception):
                await line.stop()
