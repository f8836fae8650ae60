"""An in-process pair of transports for unit tests: what one end sends, the other receives.

Characters keep their wakeup bit as-is (no encoding), so tests exercise the transaction layer and
coordinator without ptys, timing noise or a simulator.
"""

from __future__ import annotations

import asyncio

from .base import SasTransport
from .errors import PortClosed


class MemoryTransport(SasTransport):
    """One end of a :func:`memory_pair`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.peer: MemoryTransport | None = None
        self._rx: list[int] = []
        self._event = asyncio.Event()
        self._open = False
        self.sent: list[list[int]] = []  # every send, for assertions

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False
        self._event.set()

    async def send(self, chars: list[int]) -> None:
        if not self._open:
            raise PortClosed(f"{self.name} is not open")
        self.sent.append(list(chars))
        peer = self.peer
        if peer is not None and peer._open:
            peer._rx.extend(chars)
            peer._event.set()

    async def receive(self, timeout: float) -> list[int]:
        if not self._rx:
            if not self._open:
                raise PortClosed(f"{self.name} is not open")
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                return []
        out, self._rx = self._rx, []
        return out

    def reset_input(self) -> list[int]:
        out, self._rx = self._rx, []
        return out


def memory_pair(name: str = "memory") -> tuple[MemoryTransport, MemoryTransport]:
    """(host end, device end), already wired to each other."""
    host, device = MemoryTransport(f"{name}:host"), MemoryTransport(f"{name}:device")
    host.peer, device.peer = device, host
    return host, device
