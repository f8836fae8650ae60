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

A late answer may also be complete in the input before the next poll goes out (an agent starved
of CPU for a few tens of ms: the reply came in time, the agent read it too late). That next poll
ACKs it to the EGM, which then forgets it, so dropping stale input before each poll lost the event
(a 7F never seen, its game recovered only by a later meter read as ``missed``). After a poll that
went unanswered, the line reads the input first: the first answer with data counts as that poll's,
held and confirmed by the poll going out now (its caller sees it through ``on_confirmed``, marked
``late``), and the copies behind it that its repeats asked for are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import structlog

from protocols.sas import framing, wire
from protocols.sas.ackstate import LOOP_BREAK_SECONDS, HostAckTracker
from protocols.sas.errors import SASError

from ..tasks import stop_task
from ..transport.base import SasTransport
from ..transport.errors import TransportError
from .transaction import Outcome, Timing, TransactionResult, classify, transact

log = structlog.get_logger("agent.sas.line")

ACK_POLL = bytes((0x80,))
"""A general poll to address 0: no EGM answers it, and every EGM takes it as "a poll to another
address". It is both the sync poll after link-up (notes §0.3) and the cheapest implied ACK."""

REOPEN_BACKOFF = 1.0
STOP_ACK_TIMEOUT = 1.0
HELD_EXPIRY = LOOP_BREAK_SECONDS - 1.0
"""A reply held while the line was silent this long is not confirmed by the next poll: the EGM may
have taken the silence for a loop break (a frozen or starved agent: chaos seed 7's SIGSTOP) and will
send the reply again. A second short of the EGM's limit, so an ambiguous gap errs on the side a
meter read recovers (a reply the EGM did drop is ``missed``), never on a double count."""
"""How long stop() tries to send the ACK of a reply the EGM still holds."""
LATE_TIMEOUT_CAP = 4.0
"""A line whose answers come late waits for them longer: up to this many times its configured
response timeout (an absent machine's timeouts then cost that much more, so it is bounded)."""
LATE_MEMORY = 60.0
"""Seconds a lengthened response timeout lasts after the last late answer, then back to the configured."""


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
class _Unanswered:
    """The last poll, given up without an answer heard: its answer may be waiting in the input."""

    address: int
    command: int | None
    rte: bool
    on_confirmed: Callable[[TransactionResult], None] | None
    owed: int       # attempts sent whose answers were never read
    key: bytes
    given_up: float  # time.monotonic() of the last attempt's timeout
    quiet: bool     # silence was a valid answer (RTE general poll): maybe nothing is owed at all


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


class _OnSent:
    """Delivers the reply a poll ACKs once that poll is written, and only then.

    Before the write the EGM still holds the reply: delivered then, a port failure (or a stop) would
    leave it queued there and the EGM would send it again after the loop break — counted twice —
    whereas a reply the EGM did drop without our knowing shows on its meters as ``missed``."""

    __slots__ = ("_held", "_line")

    def __init__(self, line: SasLine, held: Held | None) -> None:
        self._line, self._held = line, held

    def __call__(self) -> None:
        held, self._held = self._held, None
        self._line.last_sent = time.monotonic()
        self._line._deliver(held)

    @contextlib.contextmanager
    def unless_unsent(self) -> Iterator[None]:
        try:
            yield
        except TransportError:
            if self._held is not None:
                log.warning("reply not confirmed: the poll that ACKs it was not written; the EGM sends it again",
                            port=self._line.name)
            raise


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


def _an_event(reply: framing.EgmReply) -> bool:
    """An answer the EGM forgets once ACKed and that counts (an exception or RTE event); a late data
    reply is simply asked for again by its caller, and a chirp is no answer."""
    if isinstance(reply, framing.ExceptionReply):
        return reply.code != 0
    return isinstance(reply, framing.RteEvent)


class SasLine:
    """Owns one transport and the task that talks on it."""

    def __init__(self, transport: SasTransport, timing: Timing | None = None, name: str | None = None,
                 held_expiry: float = HELD_EXPIRY) -> None:
        self.transport = transport
        self.held_expiry = held_expiry
        self.last_sent: float | None = None
        """time.monotonic() of the last poll written on this line (any address)."""
        self.timing = timing or Timing()
        self.name = name or transport.name
        self._tracker: HostAckTracker[Held] = HostAckTracker()
        self._copies: _Copies | None = None
        self._unanswered: _Unanswered | None = None
        self.late_copies = 0
        """Replies dropped as late copies of an earlier answer (see the module docstring)."""
        self.late_answers = 0
        """Answers read from the input after their poll's timeout: before its repeat, or before the next
        poll for one given up."""
        self._learned_timeout = 0.0
        self._learned_at = 0.0
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._open = False
        self._next_open = 0.0
        self.last_error: TransportError | None = None
        self.busy_seconds = 0.0
        """Time spent in transactions (polls, replies, repeats, response timeouts) since start: its rate
        is the line's utilization, which says when a line carries more than it can keep in cadence."""

    @property
    def response_timeout(self) -> float:
        """The response timeout in force: the configured one, lengthened for a while after late answers."""
        if self._learned_timeout and time.monotonic() - self._learned_at > LATE_MEMORY:
            self._learned_timeout = 0.0
            log.info("answers on time again: response timeout back to the configured",
                     port=self.name, response_timeout=self.timing.response_timeout)
        return max(self.timing.response_timeout, self._learned_timeout)

    def _answers_late(self, latency: float) -> None:
        """An answer came after its timeout: wait at least twice as long as now (the answer's lateness
        is known only as a lower bound) or its lateness and half as much again, up to the cap. Answers
        then arrive within their own poll's window, the one place where no guess is needed about
        which poll they answer."""
        want = min(self.timing.response_timeout * LATE_TIMEOUT_CAP, max(latency * 1.5, 2 * self.response_timeout))
        self._learned_at = time.monotonic()
        if want > max(self._learned_timeout, self.timing.response_timeout):
            self._learned_timeout = want
            log.warning("answers come after the response timeout: waiting longer for them", port=self.name,
                        response_timeout=round(want, 4), configured=self.timing.response_timeout)

    def _timing(self) -> Timing:
        timeout = self.response_timeout
        if timeout == self.timing.response_timeout:
            return self.timing
        return Timing(response_timeout=timeout, gap_timeout=self.timing.gap_timeout)

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
        if self._open:
            with contextlib.suppress(TimeoutError, TransportError, OSError):
                await asyncio.wait_for(self._take_late_answer(), STOP_ACK_TIMEOUT)
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
            self._unanswered = None
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
        self._answers_late(2 * self.response_timeout)
        log.warning("late copy of an earlier reply dropped; poll repeated", port=self.name, address=address)
        return True

    def _expire_held(self) -> None:
        """Leave a reply held across a silence the EGM takes for a loop break to the EGM (HELD_EXPIRY)."""
        last = self.last_sent
        if self._tracker.held is None or last is None:
            return
        silent = time.monotonic() - last
        if silent >= self.held_expiry:
            self._tracker.flush()
            log.warning("reply held across a silence the EGM takes for a loop break: not confirmed, "
                        "the EGM sends it again", port=self.name, silent_seconds=round(silent, 3))

    async def _send_ack_poll(self) -> None:
        self._expire_held()
        confirmed = _OnSent(self, self._tracker.before_send(ACK_POLL))
        with confirmed.unless_unsent():
            await self.transport.send(wire.chars(ACK_POLL))
            confirmed()

    async def _take_late_answer(self) -> _Unanswered | None:
        """Before anything goes out after an unanswered poll: its answer, if already in the input.
        Returns the unanswered poll when none was found (its answer may still be on its way)."""
        missed, self._unanswered = self._unanswered, None
        if missed is None:
            return None
        replies = await self._read_stale(missed.address, missed.command, missed.rte, self.transport.reset_input())
        data = [r for r in replies if _an_event(r)]
        known = self._copies
        while data and known is not None and known.address == missed.address and known.reply == data[0]:
            data.pop(0)   # a copy of an answer already taken (its repeated poll asked for it)
            self.late_copies += 1
            known.left -= 1
            if known.left <= 0:
                self._copies = known = None
        if not data:
            return missed
        first = data[0]
        copies = sum(1 for r in data[1:] if r == first)
        if len(data) - 1 > copies:
            log.warning("unexpected replies behind a late answer dropped", port=self.name,
                        address=missed.address, replies=len(data) - 1 - copies)
        now = time.monotonic()
        self._answers_late(self.response_timeout + now - missed.given_up)   # at most this late
        res = TransactionResult(Outcome.REPLY, first, mono=now, wall=time.time(), late=True)
        self._tracker.received(Held(missed.on_confirmed, res))   # the next poll written ACKs it
        self.late_answers += 1
        self.late_copies += copies
        left = missed.owed - 1 - copies
        self._copies = _Copies(missed.address, first, left) if left > 0 else None
        log.warning("late answer to a poll given up as unanswered taken from the input", port=self.name,
                    address=missed.address, copies_dropped=copies)
        return None

    async def _read_stale(self, address: int, command: int | None, rte: bool,
                          chars: list[int]) -> list[framing.EgmReply]:
        """Whole replies in ``chars`` (waiting a character gap for the rest of one cut short)."""
        replies: list[framing.EgmReply] = []
        reader = framing.ReplyReader(address, command, rte)
        pending = list(chars)
        while True:
            while pending:
                try:
                    reply = reader.feed([pending.pop(0)])
                except SASError:
                    return replies   # noise or a reply to something else: nothing more to read here
                if reply is not None:
                    replies.append(reply)
                    reader = framing.ReplyReader(address, command, rte)
            if not reader.started:
                return replies
            pending = await self.transport.receive(self.timing.gap_timeout)
            if not pending:
                reply = reader.gap()
                if reply is not None:
                    replies.append(reply)
                return replies

    async def _answered_just_after(self, req: _Request, timeout: TransactionResult) -> TransactionResult:
        """A poll about to be repeated whose answer came in since its timeout: that answer, not a
        repeat that the EGM takes for a NACK, answering again while this answer's copy is on its way."""
        chars = self.transport.reset_input()
        if not chars:
            return timeout
        replies = await self._read_stale(req.address, req.command, req.rte, chars)
        if not replies:
            return timeout
        now = time.monotonic()
        self._answers_late(self.response_timeout + now - timeout.mono)
        self.late_answers += 1
        if len(replies) > 1:
            log.warning("unexpected replies behind a late answer dropped", port=self.name, address=req.address,
                        replies=len(replies) - 1)
        return classify(replies[0], now - timeout.mono + self.response_timeout, [], now)

    async def _execute(self, req: _Request) -> PollResult:
        still = await self._take_late_answer()
        tracker = self._tracker
        if still is not None and still.quiet and req.frame is not None and still.address == req.address \
                and still.key == ack_key(req.frame):
            # The same poll again after one answered by silence: if that silence was a late answer,
            # the EGM takes this poll for a repeat and sends the same answer twice; the first to come
            # is taken, an equal one right behind it is that copy.
            self._copies = _Copies(req.address, None, 2)
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
            self._expire_held()
            confirmed = _OnSent(self, tracker.before_send(key))
            with confirmed.unless_unsent():
                res = await transact(self.transport, req.address, req.frame, req.command, req.rte, self._timing(),
                                     on_sent=confirmed)
            if res.outcome is Outcome.TIMEOUT and not req.quiet_ok:
                res = await self._answered_just_after(req, res)
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
            if res.outcome in (Outcome.TIMEOUT, Outcome.GARBLED):
                # A garbled attempt may be a late answer to an earlier poll in this one's window (the
                # reply to another command), this poll's own answer still on its way: counted as owed,
                # so its copy after the repeat is known. Mere noise costs at most one repeated poll.
                owed += 1
            if res.outcome is Outcome.TIMEOUT and req.quiet_ok:
                tracker.received(None)
                self._unanswered = _Unanswered(req.address, req.command, req.rte, req.on_confirmed, owed, key,
                                               res.mono, quiet=True)
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
                if res.outcome is Outcome.TIMEOUT:
                    self._unanswered = _Unanswered(req.address, req.command, req.rte, req.on_confirmed, owed, key,
                                               res.mono, quiet=True)
                return PollResult(res, attempts, sent)
