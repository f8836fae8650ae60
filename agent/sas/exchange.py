"""The SAS machine coordinator's transaction layer: one poll through the line, and what it tells.

:class:`SasExchange` is the part of :class:`~agent.sas.coordinator.MachineCoordinator` that talks to
the :class:`~agent.sas.line.SasLine`: the sync poll a (re)connected EGM needs, retries, the link
statistics, the cadence bookkeeping of general polls, the link-state consequences of an answer or a
silence (:class:`agent.polling.LinkState`: ``link_down_after`` unanswered polls take the link down)
and the facts the line confirms (:class:`~agent.sas.facts.ExceptionFact`). The reads built on it are
in :mod:`agent.sas.reads`, the schedule and the commands in :mod:`agent.sas.coordinator`.

Facts are kept in ``_pending`` and handed to the sink between turns (:meth:`SasExchange._flush`),
so a full sink holds the coordinator back (the EGM keeps its exceptions in NVRAM meanwhile).
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections import deque
from typing import Any

import structlog

from protocols.sas import framing
from protocols.sas import longpolls as lp
from protocols.sas.exceptions import exception_name

from ..polling import FactSink, LinkLost, PollCoordinator
from ..transport.errors import TransportError
from . import facts as F
from .config import PollConfig
from .line import SasLine
from .stats import LinkStats
from .transaction import Outcome, TransactionResult

log = structlog.get_logger("agent.sas")

RTE_REQUEUE_LIMIT = 24
"""How often a long poll is asked again when RTE events answer it instead (each event is consumed,
and the EGM's FIFO holds at least 20, so a busy machine cannot starve a read forever)."""


class Resync(Exception):
    """Raised inside a job when the EGM chirped: it lost the link and must be resynchronized."""


class SasExchange(PollCoordinator):
    """Transactions with one EGM address on a shared line (see the module docstring)."""

    task_name = "sas-coordinator"

    def __init__(self, line: SasLine, address: int, *, device: str | None = None,
                 config: PollConfig | None = None, facts: FactSink | None = None) -> None:
        if not 1 <= address <= 127:
            raise ValueError(f"SAS address {address} is outside 1..127")
        self.config = config or PollConfig()
        super().__init__(device or f"sas-{address:03d}", self.config, facts)
        self.line = line
        self.address = address
        self.stats = LinkStats()
        self.rte_active = False
        self.fast_polling = False
        self._log = log.bind(device=self.device, address=address, port=line.name)
        self._pending: deque[F.Fact] = deque()
        self._need_sync = True
        self._last_answer = 0.0
        self._reply_mono = 0.0           # when the last long poll's own reply (not an event) arrived
        self._rte_events = 0             # RTE events that answered a long poll (LP 0E asks again while they come)
        self._cadence_pending = False    # the next poll through the line is a general poll's: time it
        self._last_general: tuple[float, float] | None = None   # the last general poll's wire time and how
        # long it had to last at least (its quiet timeout); None: none since the link came up

    @property
    def poll_interval(self) -> float:
        fast = self.config.fast_poll_interval
        if self.fast_polling and fast is not None:
            return max(fast, 0.04)
        return self.config.poll_interval

    @abstractmethod
    def _on_exception(self, code: int) -> None:
        """Immediate reactions to an exception code (an RTE event answering a long poll included)."""

    @abstractmethod
    def _link_lost(self) -> None:
        """``link_down_after`` polls went unanswered: the link is down (report it, drop the jobs)."""

    # ---- facts -----------------------------------------------------------------------------------
    def _fact(self, cls: type[Any], *, mono: float | None = None, wall: float | None = None, **kw: Any) -> Any:
        return cls(device=self.device, address=self.address, mono=time.monotonic() if mono is None else mono,
                   wall=time.time() if wall is None else wall, **kw)

    def _emit(self, fact: F.Fact) -> None:
        self._pending.append(fact)
        if not self._running:
            self._flush_nowait()

    def _flush_nowait(self) -> None:
        while self._pending:
            try:
                self.facts.put_nowait(self._pending[0])
            except asyncio.QueueFull:
                self._log.error("fact queue full at shutdown; facts not handed over", left=len(self._pending))
                return
            self._pending.popleft()

    async def _flush(self) -> None:
        while self._pending:
            await self.facts.put(self._pending.popleft())

    def _confirmed(self, result: TransactionResult) -> None:
        """The line confirms a reply (the next different poll went out): now the exception counts.

        A ``late`` one answered a poll this coordinator had given up on, so its immediate reactions
        (the handpay or ticket read, the meters after a game) were never queued: they are now."""
        reply = result.reply
        if result.late and isinstance(reply, framing.ExceptionReply | framing.RteEvent) and reply.code != 0:
            self._log.info("late answer of the EGM confirmed", code=f"{reply.code:02X}")
            self._on_exception(reply.code)
        if isinstance(reply, framing.ExceptionReply) and reply.code != 0:
            self.stats.exception(reply.code)
            self._emit(self._fact(F.ExceptionFact, mono=result.mono, wall=result.wall, code=reply.code,
                                  name=exception_name(reply.code), rte=False))
        elif isinstance(reply, framing.RteEvent):
            self.stats.exception(reply.code)
            self._emit(self._fact(F.ExceptionFact, mono=result.mono, wall=result.wall, code=reply.code,
                                  name=exception_name(reply.code), rte=True, data=reply.data))


    # ---- transactions ----------------------------------------------------------------------------
    async def _xact(self, frame: bytes, command: int | None, *, quiet_ok: bool = False,
                    probing: bool = False, retries: int | None = None) -> TransactionResult:
        """One poll through the line, with sync, statistics and link-state bookkeeping."""
        cfg = self.config
        rte = self.rte_active or probing
        timed, self._cadence_pending = self._cadence_pending and not probing, False
        try:
            if self._need_sync:
                await self.line.sync()
                self._need_sync = False
            result = await self.line.poll(self.address, frame, command, rte=rte,
                                          retries=cfg.retries if retries is None else retries,
                                          quiet_ok=quiet_ok, on_confirmed=self._confirmed)
        except TransportError as exc:
            self.last_error = str(exc)
            final = TransactionResult(Outcome.TIMEOUT, error=str(exc), mono=time.monotonic(), wall=time.time())
            attempts = [final]
            if probing:
                return final
        else:
            final, attempts = result.final, result.attempts
            self.stats.record(attempts, quiet_ok)
            if timed:
                quiet = final.outcome is Outcome.TIMEOUT and quiet_ok
                self._general_sent(result.sent, self.line.response_timeout if quiet else 0.0)
        if final.outcome is Outcome.TIMEOUT and not quiet_ok:
            self._need_sync = True  # a power-cycled EGM ignores us until it sees another address
            if probing:
                return final
            self.stats.missed_polls += 1
            if self.link.failed():
                self._link_lost()
                raise LinkLost(f"{self.link.failures} polls unanswered")
            return final
        if final.outcome is not Outcome.TIMEOUT:
            self.link.answered(final.wall)
            self._last_answer = final.mono
        if final.outcome is Outcome.CHIRP and not probing:
            self._need_sync = True
            raise Resync()
        if final.outcome is Outcome.GARBLED:
            self.last_error = final.error
        return final

    async def _long(self, msg: lp.Message, retries: int | None = None) -> framing.EgmReply | None:
        """A long poll; an RTE event answering it is handled and the poll asked again."""
        frame = framing.encode_long_poll(self.address, msg)
        for _ in range(RTE_REQUEUE_LIMIT):
            res = await self._xact(frame, msg.COMMAND, retries=retries)
            reply = res.reply
            if isinstance(reply, framing.RteEvent):
                self._rte_events += 1
                self._on_exception(reply.code)
                continue  # the line ACKs the event (poll to address 0) before asking again
            if res.outcome is Outcome.REPLY:
                self._reply_mono = res.mono
                return reply
            return None
        return None

    async def _read(self, msg: lp.Message, cls: type[lp.Message], retries: int | None = None) -> Any:
        reply = await self._long(msg, retries)
        if isinstance(reply, framing.Reply) and isinstance(reply.message, cls):
            return reply.message
        return None


    # ---- cadence ---------------------------------------------------------------------------------
    def _general_sent(self, sent: float, lasted: float) -> None:
        """Cadence bookkeeping for one general poll (or the liveness long poll standing in for one).

        It was due one interval after the previous one went out, but not before that one could be
        over: a quiet RTE poll lasts its whole response timeout (``lasted``; 100 ms on a pty, more
        than a 40 ms cadence). Its lateness is how much later it went on the wire: waits behind other
        machines on a shared line, repeats of a garbled reply, long jobs and a busy event loop (whose
        delay a measured end time would hide) included."""
        previous, self._last_general = self._last_general, (sent, lasted)
        if previous is not None:
            interval = self.poll_interval
            self.stats.cadence(sent - previous[0] - max(interval, previous[1]), interval)



__all__ = ["RTE_REQUEUE_LIMIT", "LinkLost", "Resync", "SasExchange"]
