"""The line owner: one task per serial port, serializing every transaction on it.

SAS is a multidrop bus: several EGM addresses may share one port, and the implied ACK rule spans
them (a poll to *any* other address ACKs the last reply). So the ACK bookkeeping
(``ackstate.HostAckTracker``) and the immediate repeat of a garbled poll belong to the line, not
to a machine: a repeat must go out before any other address is polled, or the EGM would take the
other poll as an ACK and drop the data we lost.

Each :class:`~agent.sas.coordinator.MachineCoordinator` submits polls with :meth:`SasLine.poll` and
awaits the result; the line task runs them one at a time, in submission order.

A poll that went unanswered may still be answered, late (a stalled EGM, a loaded pty): its answer
then arrives while a later poll waits for its own. After the repeat of an unanswered poll the EGM
owes one answer per attempt, all the same data (a repeated poll is an implied NACK), so a copy of
the accepted reply may still be on its way when the next, different poll goes out — taken for that
poll's answer, the same event was counted twice and the answer it displaced was lost (chaos seed
3: a 7E twice, its 7F gone). The line remembers how many such copies may still come; a reply equal
to them is dropped and the poll repeated, which makes the EGM send its real answer again. A reply
that differs proves none is left: the line delivers the EGM's answers in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from protocols.sas import framing, wire
from protocols.sas.ackstate import HostAckTracker

from ..tasks import stop_task
from ..transport.base import SasTransport
from ..transport.errors import TransportError
from .transaction import Outcome, Timing, TransactionResult, transact

log = structlog.get_logger("agent.sas.line")

ACK_POLL = bytes((0x80,))
"""A general poll to address 0: no EGM answers it, and every EGM takes it as "a poll to another
address". It is both the sync poll after link-up (notes §0.3) and the cheapest implied ACK."""

REOPEN_BACKOFF = 1.0
STOP_ACK_TIMEOUT = 1.0
"""How long stop() tries to send the ACK of a reply the EGM still holds."""

_T = TypeVar("_T")


@dataclass(slots=True)
class Held:
    """A reply the EGM still holds for us until our next different poll ACKs it."""

    on_confirmed: Callable[[TransactionResult], None] | None
    result: TransactionResult


@dataclass(slots=True)
class _Copies:
    """Copies of an accepted reply that may still arrive (one per attempt left unanswered)."""

    address: int
    reply: framing.EgmReply | None   # None: not arrived yet (the poll was given up unanswered)
    left: int


@dataclass(slots=True)
class PollResult:
    """What happened to one submitted poll: the last attempt's result and every attempt."""

    final: TransactionResult
    attempts: list[TransactionResult] = field(default_factory=list)
    sent: float = 0.0
    """time.monotonic() when the first attempt went on the wire (after any wait for the line), which is
    what a machine's poll cadence is measured by."""

    @property
    def outcome(self) -> Outcome:
        return self.final.outcome

    @property
    def reply(self) -> framing.EgmReply | None:
        return self.final.reply


@dataclass(slots=True)
class _Request:
    address: int
    frame: bytes | None           # None: send ACK_POLL only (sync)
    command: int | None
    rte: bool
    retries: int
    quiet_ok: bool                # silence is a valid answer (general poll in RTE mode)
    on_confirmed: Callable[[TransactionResult], None] | None
    future: asyncio.Future[PollResult]


def ack_key(frame: bytes) -> bytes:
    """What implied ACK/NACK compares: the general-poll byte, or 2 bytes of a long poll (5 under B0)."""
    if len(frame) >= 2 and frame[1] == 0xB0:
        return frame[:5]
    return frame[:2]


def holds_data(result: TransactionResult) -> bool:
    """Whether the EGM keeps something pending until ACKed (anything but 'no activity')."""
    reply = result.reply
    if isinstance(reply, framing.ExceptionReply):
        return reply.code != 0
    return reply is not None


class SasLine:
    """Owns one transport and the task that talks on it."""

    def __init__(self, transport: SasTransport, timing: Timing | None = None, name: str | None = None) -> None:
        self.transport = transport
        self.timing = timing or Timing()
        self.name = name or transport.name
        self._tracker: HostAckTracker[Held] = HostAckTracker()
        self._copies: _Copies | None = None
        self.late_copies = 0
        """Replies dropped as late copies of an earlier answer (see the module docstring)."""
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._open = False
        self._next_open = 0.0
        self.last_error: TransportError | None = None
        self.busy_seconds = 0.0
        """Time spent in transactions (polls, replies, repeats, response timeouts) since start: its rate
        is the line's utilization, which says when a line carries more than it can keep in cadence."""

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def start(self, *, tolerate_missing: bool = False) -> None:
        """Open the port (raises TransportError with a clear message) and start the line task.

        ``tolerate_missing``: a port that cannot be opened yet (an unplugged USB adapter) is logged
        and retried every :data:`REOPEN_BACKOFF` seconds like a port that failed later, instead of
        raising — so one missing adapter leaves its machines offline, not the whole hall unpolled."""
        try:
            await self.transport.open()
        except TransportError as exc:
            if not tolerate_missing:
                raise
            self.last_error = exc
            self._next_open = time.monotonic() + REOPEN_BACKOFF
            log.error("port unavailable; retrying", port=self.name, error=str(exc), retry_seconds=REOPEN_BACKOFF)
        else:
            self._open = True
        self._task = asyncio.create_task(self._run(), name=f"sas-line:{self.name}")

    async def stop(self) -> None:
        """Cancel the task, ACK what the EGM still holds for us, and close the port.

        A reply is ours only once the EGM has heard the poll that ACKs it: confirmed without one
        (as a bare flush did), it stays in the EGM's queue, and after the loop break that the
        restart causes the EGM sends it again to the next agent — the same 7F, win included,
        counted twice. So the ACK poll goes out first; if it cannot, the reply is left to the EGM."""
        task, self._task = self._task, None
        await stop_task(task)
        if self._tracker.held is not None:
            try:
                if not self._open:
                    raise TransportError(f"{self.name} is closed")
                await asyncio.wait_for(self._send_ack_poll(), STOP_ACK_TIMEOUT)
            except (TimeoutError, TransportError, OSError) as exc:
                self._tracker.flush()
                log.warning("reply held at stop left to the EGM: the poll that ACKs it could not go out; "
                            "the EGM sends it again", port=self.name, error=str(exc) or type(exc).__name__)
        while not self._queue.empty():
            req = self._queue.get_nowait()
            if not req.future.done():
                req.future.set_exception(TransportError(f"{self.name}: line stopped"))
        await self.transport.close()
        self._open = False

    # ---- API for coordinators ---------------------------------------------------------------------
    async def poll(self, address: int, frame: bytes, command: int | None, *, rte: bool = False,
                   retries: int = 2, quiet_ok: bool = False,
                   on_confirmed: Callable[[TransactionResult], None] | None = None) -> PollResult:
        """Run one poll (with up to ``retries`` immediate repeats on a garbled or missing reply).

        ``on_confirmed`` is called with the reply once the next different poll on this line has gone
        out, i.e. once the EGM considers it delivered. Raises TransportError if the port failed.
        """
        return await self._submit(_Request(address, frame, command, rte, retries, quiet_ok, on_confirmed,
                                           asyncio.get_running_loop().create_future()))

    async def sync(self, address: int = 0) -> None:
        """Send the sync poll (a general poll to address 0) that lets EGMs answer after link-up."""
        await self._submit(_Request(address, None, None, False, 0, True, None,
                                    asyncio.get_running_loop().create_future()))

    async def _submit(self, req: _Request) -> PollResult:
        if self._task is None:
            raise TransportError(f"{self.name}: line not started")
        self._queue.put_nowait(req)
        try:
            return await req.future
        except asyncio.CancelledError:
            req.future.cancel()
            raise

    # ---- the line task ----------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            req = await self._queue.get()
            if req.future.done():
                continue
            try:
                await self._ensure_open()
                began = time.monotonic()
                try:
                    result = await self._execute(req)
                finally:
                    self.busy_seconds += time.monotonic() - began
            except TransportError as exc:
                self.last_error = exc
                await self._drop_port(exc)
                if not req.future.done():
                    req.future.set_exception(exc)
                continue
            if not req.future.done():
                req.future.set_result(result)

    async def _ensure_open(self) -> None:
        if self._open:
            return
        now = time.monotonic()
        if now < self._next_open:
            raise self.last_error or TransportError(f"{self.name} is closed")
        self._next_open = now + REOPEN_BACKOFF
        await self.transport.open()
        self._open = True
        log.info("port reopened", port=self.name)

    async def _drop_port(self, exc: TransportError) -> None:
        if self._open:
            log.warning("port failed", port=self.name, error=str(exc))
            with contextlib.suppress(OSError):
                await self.transport.close()
            self._open = False
            self._copies = None
            self._next_open = time.monotonic() + REOPEN_BACKOFF

    def _deliver(self, held: Held | None) -> None:
        if held is not None and held.on_confirmed is not None:
            try:
                held.on_confirmed(held.result)
            except Exception:  # a coordinator bug must not kill the line for every address on it
                log.exception("confirmation handler failed", port=self.name)

    def _late_copy(self, address: int, res: TransactionResult) -> bool:
        """Whether this reply is a late copy of an answer already accepted (module docstring)."""
        copies = self._copies
        if copies is None or copies.address != address or res.reply is None:
            return False
        if copies.reply is None and holds_data(res):
            copies.reply = res.reply   # the late answer itself (or this poll's own): taken, once
            copies.left -= 1
            if copies.left <= 0:
                self._copies = None
            return False
        if res.reply != copies.reply:
            self._copies = None   # an answer of its own: every earlier one has arrived before it
            return False
        copies.left -= 1
        if copies.left <= 0:
            self._copies = None
        self.late_copies += 1
        log.warning("late copy of an earlier reply dropped; poll repeated", port=self.name, address=address)
        return True

    async def _send_ack_poll(self) -> None:
        confirmed = self._tracker.before_send(ACK_POLL)
        await self._unconfirmed_on_failure(confirmed, self.transport.send(wire.chars(ACK_POLL)))
        self._deliver(confirmed)

    async def _unconfirmed_on_failure(self, confirmed: Held | None, sending: Awaitable[_T]) -> _T:
        """Await the poll that ACKs ``confirmed``; if the port fails meanwhile, ``confirmed`` is not
        delivered: the EGM may not have heard the ACK and would send the reply again after the loop
        break (counted twice), whereas a reply it did drop shows as ``missed`` on its meters."""
        try:
            return await sending
        except TransportError:
            if confirmed is not None:
                log.warning("reply not confirmed: the poll that ACKs it failed; the EGM sends it again",
                            port=self.name)
            raise

    async def _execute(self, req: _Request) -> PollResult:
        tracker = self._tracker
        if req.frame is None:
            sent = time.monotonic()
            await self._send_ack_poll()
            empty = TransactionResult(Outcome.REPLY, mono=time.monotonic(), wall=time.time())
            return PollResult(empty, [], sent)
        key = ack_key(req.frame)
        if tracker.held is not None and tracker.last_key == key:
            # Same poll again while the EGM still holds its last reply: that would be a NACK
            # (resend) to the EGM; ACK it with a poll to address 0 first.
            await self._send_ack_poll()
        attempts: list[TransactionResult] = []
        sent = time.monotonic()
        owed = 0      # attempts of this poll whose answer may still arrive
        dropped = 0
        while True:
            confirmed = tracker.before_send(key)
            res = await self._unconfirmed_on_failure(
                confirmed, transact(self.transport, req.address, req.frame, req.command, req.rte, self.timing))
            self._deliver(confirmed)   # after the ACK went out, before this reply is looked at
            attempts.append(res)
            if res.outcome is Outcome.REPLY and dropped <= req.retries and self._late_copy(req.address, res):
                # Not this poll's answer: ask again (the EGM repeats its real one); this attempt's own
                # answer may now still be on its way, as after a timeout.
                dropped += 1
                owed += 1
                tracker.garbled()
                continue
            if res.outcome is Outcome.REPLY:
                tracker.received(Held(req.on_confirmed, res) if holds_data(res) else None)
                if owed and holds_data(res) and res.reply is not None:
                    self._copies = _Copies(req.address, res.reply, min(owed, req.retries + 1))
                return PollResult(res, attempts, sent)
            if res.outcome is Outcome.TIMEOUT:
                owed += 1
            if res.outcome is Outcome.TIMEOUT and req.quiet_ok:
                tracker.received(None)
                return PollResult(res, attempts, sent)
            if res.outcome in (Outcome.BUSY, Outcome.CHIRP):
                tracker.received(None)
                return PollResult(res, attempts, sent)
            tracker.garbled()  # TIMEOUT, GARBLED, NACK: the same poll again, at once
            if not tracker.must_repeat or len(attempts) > req.retries:
                if owed > 1:
                    # Given up unanswered: the first answer still to come is that poll's (the next
                    # poll ACKs it to the EGM), the others are copies of it.
                    self._copies = _Copies(req.address, None, owed)
                return PollResult(res, attempts, sent)
