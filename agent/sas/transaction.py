"""One SAS transaction: write a poll, read the EGM's answer, classify it, time it.

Timing ([S602] §2.3): the reply must start within 20 ms of the poll (``response_timeout``, made
configurable because a loaded pty adds scheduling delay) and bytes follow each other within 5 ms
(``gap_timeout``; an idle line lets ``ReplyReader.gap()`` decide an address-only reply).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from protocols.sas import framing, wire
from protocols.sas.errors import SASError

from ..transport.base import SasTransport


class Outcome(enum.Enum):
    REPLY = "reply"        # a complete reply: exception, RTE event, data or ACK
    TIMEOUT = "timeout"    # nothing at all within the response timeout
    GARBLED = "garbled"    # bad CRC, wrong length, cut short, bytes no reply starts with
    NACK = "nack"          # the EGM rejected our long poll (addr|80)
    BUSY = "busy"          # addr 00: ask again later
    CHIRP = "chirp"        # the EGM lost the link and announces itself


@dataclass(frozen=True, slots=True)
class Timing:
    response_timeout: float = 0.020
    gap_timeout: float = 0.005


PTY_TIMING = Timing(response_timeout=0.100, gap_timeout=0.030)
"""Defaults for ptys: the simulator shares the machine's CPU, so its answers may start late."""


@dataclass(frozen=True, slots=True)
class TransactionResult:
    outcome: Outcome
    reply: framing.EgmReply | None = None
    latency: float | None = None       # seconds from the poll written to the reply complete
    error: str | None = None
    received: tuple[int, ...] = ()     # the characters heard, for diagnostics
    mono: float = 0.0                  # time.monotonic() when the reply completed (or gave up)
    wall: float = 0.0
    late: bool = False
    """The answer to a poll already given up as unanswered, found in the input before the next poll
    (``agent.sas.line``): its caller had moved on, so the reply reaches it only through confirmation."""


async def transact(transport: SasTransport, address: int, frame: bytes, command: int | None,
                   rte: bool, timing: Timing, on_sent: Callable[[], None] | None = None) -> TransactionResult:
    """Send ``frame`` (wakeup bit on its first byte) and read the reply to it.

    ``command`` is None for a general poll, else the long poll's command byte. Stale input is dropped
    first, so a late reply to an earlier poll cannot be taken for this one's. ``on_sent`` runs once
    the frame is written (the moment it ACKs the previous reply to the EGM), before the reply is read.
    """
    transport.reset_input()
    await transport.send(wire.chars(frame))
    if on_sent is not None:
        on_sent()
    start = time.monotonic()
    reader = framing.ReplyReader(address, command, rte)
    heard: list[int] = []
    wait = timing.response_timeout
    while True:
        chars = await transport.receive(wait)
        now = time.monotonic()
        if not chars:
            if not reader.started:
                return TransactionResult(Outcome.TIMEOUT, mono=now, wall=time.time())
            reply = reader.gap()
            if reply is None:
                return TransactionResult(Outcome.GARBLED, error="reply cut short", received=tuple(heard),
                                         mono=now, wall=time.time())
            return classify(reply, now - start, heard, now)
        heard.extend(chars)
        try:
            reply = reader.feed(chars)
        except SASError as exc:
            await _drain(transport, timing.gap_timeout)
            return TransactionResult(Outcome.GARBLED, error=str(exc), received=tuple(heard),
                                     mono=now, wall=time.time())
        if reply is not None:
            return classify(reply, now - start, heard, now)
        wait = timing.gap_timeout


def classify(reply: framing.EgmReply, latency: float, heard: list[int], now: float) -> TransactionResult:
    if isinstance(reply, framing.Nack):
        outcome = Outcome.NACK
    elif isinstance(reply, framing.Busy):
        outcome = Outcome.BUSY
    elif isinstance(reply, framing.Chirp):
        outcome = Outcome.CHIRP
    else:
        outcome = Outcome.REPLY
    return TransactionResult(outcome, reply, latency, received=tuple(heard), mono=now, wall=time.time())


async def _drain(transport: SasTransport, gap: float) -> None:
    """Swallow the rest of a garbled reply until the line is idle, so it cannot spill into the next."""
    for _ in range(64):
        if not await transport.receive(gap):
            return
