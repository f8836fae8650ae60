"""Implied ACK / NACK, the only reliability SAS has (notes/sas-protocol.md §3.5).

A reply is acknowledged implicitly by the host's *next different* poll (or a poll to another
address, or a broadcast); repeating the same poll is a NACK that asks for the same data again.
Both sides need the rule, so both trackers live here, free of I/O and clocks.

Poll keys are what gets compared: the general-poll byte, or the first two bytes of a long poll
(five under a B0 preamble) — :attr:`framing.LongPollFrame.ack_key` computes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

LOOP_BREAK_SECONDS = 5.0
"""No address byte on the line for this long and an EGM takes the loop as broken ([S602] §4.2): it
chirps, and a reply it still held for an ACK is sent again once polled — no later poll ACKs it."""

FINAL_NACK_COUNT = 2
"""Repeats after which a host gives up on a poll; the EGM keeps the data all the same (Monaco)."""


@dataclass
class HostAckTracker(Generic[T]):
    """Host side: a reply counts as received only once the next different poll goes out.

    Call :meth:`received` with a reply's decoded content when it arrives and :meth:`before_send`
    with each poll's key before it is written: when the key differs from the last poll's, the held
    reply is confirmed and returned. :meth:`garbled` marks the last reply as unusable, so the same
    poll must be repeated (:attr:`must_repeat`).
    """

    last_key: bytes | None = None
    held: T | None = None
    must_repeat: bool = False
    repeats: int = 0

    def before_send(self, key: bytes) -> T | None:
        confirmed = None
        if key != self.last_key:
            confirmed, self.held = self.held, None
            self.repeats = 0
            self.must_repeat = False
        else:
            self.repeats += 1
        self.last_key = key
        return confirmed

    def received(self, content: T | None) -> None:
        self.held = content
        self.must_repeat = False

    def garbled(self) -> None:
        """The reply to ``last_key`` was lost or corrupt: repeat that poll (an implied NACK)."""
        self.held = None
        self.must_repeat = self.repeats < FINAL_NACK_COUNT

    def flush(self) -> T | None:
        """Confirm what is held without a poll (e.g. at shutdown, where no next poll will come)."""
        held, self.held = self.held, None
        return held


@dataclass
class EgmAckTracker(Generic[T]):
    """EGM side: decides, for each poll heard, whether the last reply was ACKed or NACKed.

    :meth:`heard` returns ``(acked, repeat)``: ``acked`` is the reply the host has now implicitly
    acknowledged (commit it: pop the exception, clear the pending data); ``repeat`` is the reply to
    send again because the host repeated its poll. A repeated poll never drops data, however often.
    """

    last_key: bytes | None = None
    pending: T | None = None
    nacks: int = field(default=0)

    def heard(self, key: bytes, to_me: bool) -> tuple[T | None, T | None]:
        if to_me and key == self.last_key and self.pending is not None:
            self.nacks += 1
            return None, self.pending
        acked, self.pending = self.pending, None
        self.nacks = 0
        self.last_key = key if to_me else None
        return acked, None

    def sent(self, reply: T | None, key: bytes) -> None:
        """Record what was answered to the poll ``key`` (None when there is nothing to commit)."""
        self.pending = reply
        self.last_key = key

    def link_lost(self) -> T | None:
        """Loop break: nothing is ACKed; hand back what is pending so it is sent again later."""
        pending, self.pending, self.last_key = self.pending, None, None
        return pending
