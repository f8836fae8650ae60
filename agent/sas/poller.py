"""Many machines, few ports: build one :class:`SasLine` per port and one coordinator per address.

This is what ``hall-agent run`` (next issue) and the benchmark use. Devices come from the
simulator's / installer's ``devices.toml`` (``[[devices]]`` with ``id``, ``protocol = "sas"``,
``port``, ``address``, ``framing``, optional ``transport``).
"""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..transport import default_kind, make_transport
from ..transport.base import Framing
from . import facts as F
from .config import PollConfig
from .coordinator import MachineCoordinator
from .line import SasLine
from .transaction import PTY_TIMING, Timing


@dataclass(frozen=True)
class SasDevice:
    id: str
    port: str
    address: int
    framing: Framing = "marks"
    transport: str | None = None  # None: from the path (/dev/pts/* → pty, else uart)


def load_devices(path: str | Path) -> list[SasDevice]:
    """The SAS devices of a devices.toml (other protocols are skipped)."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    out = []
    for d in data.get("devices", []):
        if d.get("protocol", "sas") != "sas":
            continue
        out.append(SasDevice(id=str(d["id"]), port=str(d["port"]), address=int(d["address"]),
                             framing=d.get("framing", "marks"), transport=d.get("transport")))
    return out


def timing_for(kind: str, response_timeout: float | None = None, gap_timeout: float | None = None) -> Timing:
    """Spec timing on a UART, more slack on a pty; explicit values win."""
    base = PTY_TIMING if kind == "pty" else Timing()
    return Timing(response_timeout if response_timeout is not None else base.response_timeout,
                  gap_timeout if gap_timeout is not None else base.gap_timeout)


class SasPoller:
    """Owns the lines and coordinators of a set of devices, and one shared facts queue."""

    def __init__(self, devices: list[SasDevice], config: PollConfig | None = None, *,
                 timing: Timing | None = None, queue_size: int = 10_000) -> None:
        self.config = config or PollConfig()
        self.facts: asyncio.Queue[F.Fact] = asyncio.Queue(maxsize=queue_size)
        self.lines: dict[str, SasLine] = {}
        self.coordinators: dict[str, MachineCoordinator] = {}
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

    async def stop(self) -> None:
        """Coordinators first (no new polls), then lines (which confirm what they hold)."""
        for coord in self.coordinators.values():
            await coord.stop()
        for line in self.lines.values():
            with contextlib.suppress(Exception):
                await line.stop()
