"""The one interface every SAS transport offers: 9-bit characters in, 9-bit characters out.

A character is an ``int``: the byte plus ``protocols.sas.wire.WAKEUP`` (0x100) when the wakeup bit
is set. How the wakeup bit travels (stick parity on a UART, PARMRK marks on a pty, not at all in
``structural`` framing, a Python list in-process) is each implementation's business, so the
transaction layer above never knows which one it talks to.
"""

from __future__ import annotations

import abc
from typing import Literal

Framing = Literal["marks", "structural"]


class SasTransport(abc.ABC):
    """An open-able serial line carrying SAS characters. Asyncio only, never blocks the loop."""

    #: a human-readable name for logs and CLI output (the port path)
    name: str = "?"

    @abc.abstractmethod
    async def open(self) -> None:
        """Open the line; raises :class:`~agent.transport.errors.TransportError` with a clear message."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the line; safe to call twice."""

    @abc.abstractmethod
    async def send(self, chars: list[int]) -> None:
        """Write characters (wakeup bits included) and return once they are handed to the line."""

    @abc.abstractmethod
    async def receive(self, timeout: float) -> list[int]:
        """Characters received so far, waiting up to ``timeout`` s for the first one; [] on timeout."""

    @abc.abstractmethod
    def reset_input(self) -> list[int]:
        """Drop everything received and not yet read (stale replies, chirps, noise), without waiting,
        and return it: the line reads a late answer out of it (``agent.sas.line``)."""

    async def __aenter__(self) -> SasTransport:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
