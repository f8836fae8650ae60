"""What the SAS machine coordinator reads, and the queue of reads it still has to do.

:class:`SasReads` builds on the transaction layer (:mod:`agent.sas.exchange`): the general poll and
the immediate reactions to an exception (a handpay is read with LP 1B, a ticket with LP 3D, the
meters after a significant event …), real-time event reporting (LP 0E), the identity (LP 1F, 54, 51,
56, 53, A0, 55), meter snapshots (LP 6F, 2F or 1C), handpay and ticket details and the clock (LP 7E /
7F). Follow-up reads are *jobs*: queued by name (one of each at a time) and run by the schedule of
:class:`~agent.sas.coordinator.MachineCoordinator` between general polls.
"""

from __future__ import annotations

import datetime as dt
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable

from protocols.sas import framing
from protocols.sas import longpolls as lp
from protocols.sas.clock import from_sas, to_sas
from protocols.sas.denominations import DENOMINATION_CENTS
from protocols.sas.errors import SASError
from protocols.sas.exceptions import ExceptionCode, Significance, codes_with
from protocols.sas.meters import meter_name, meter_unit

from ..polling import FactSink
from . import facts as F
from .config import PollConfig
from .exchange import SasExchange
from .line import SasLine

SIGNIFICANT_EXCEPTIONS: frozenset[int] = codes_with(Significance.READ_METERS)
"""Exceptions after which the meters are read at once (design.md: door, power, RAM clear, options or
game change, in/out of service, handpay, ticket); the one table is :mod:`protocols.sas.exceptions`."""
RTE_ENABLE_ROUNDS = 8
"""How many times LP 0E is asked again while queued RTE events answer it (24 each: a FIFO of 20 and
the priority exceptions drain long before; a machine still playing fast cannot hold RTE off)."""
READ_TRIES = 5
"""How often LP 3D (ticket) and LP 1B (handpay) are asked again when the EGM's queued events kept
answering them instead (see ``_again``)."""
METERS_1C: tuple[tuple[str, int | None], ...] = (
    ("coin_in", 0x00), ("coin_out", 0x01), ("total_drop", 0x24), ("jackpot", 0x02),
    ("games_played", 0x05), ("games_won", 0x06), ("slot_door_opened", None), ("power_reset", None),
)


class SasReads(SasExchange):
    """The reads of one EGM and their job queue (see the module docstring)."""

    def __init__(self, line: SasLine, address: int, *, device: str | None = None,
                 config: PollConfig | None = None, facts: FactSink | None = None) -> None:
        super().__init__(line, address, device=device, config=config, facts=facts)
        self.identity: F.Identity | None = None
        self._meter_source: str | None = None
        self._jobs: deque[tuple[str, Callable[[], Awaitable[None]]]] = deque()

    @abstractmethod
    def _identity_again(self) -> None:
        """The identity read failed (wholly or its LP A0): read it again later, if tries are left."""

    # ---- jobs ------------------------------------------------------------------------------------
    def _queue(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        if all(n != name for n, _ in self._jobs):
            self._jobs.append((name, job))

    async def _run_job(self, name: str) -> None:
        """Run a queued job now, out of turn. A ticket whose 3D answered a poll of a meter read is
        read before that snapshot goes out, so its ticket.printed is written before the snapshot
        whose meters may already contain it: the log then orders every event a snapshot's meters
        contain before that snapshot (what it lacks, it lists as ``unmetered``)."""
        for index, (queued, job) in enumerate(self._jobs):
            if queued == name:
                del self._jobs[index]
                await job()
                return

    def _queue_meters(self, reason: str) -> None:
        self._queue("meters", lambda: self._meters_job(reason))

    # ---- general poll and exceptions -------------------------------------------------------------
    async def _general_poll(self) -> None:
        self._cadence_pending = True
        if self.rte_active and time.monotonic() - self._last_answer > self.config.liveness_interval:
            # In RTE mode silence means "nothing happened"; prove the EGM is there now and then.
            await self._long(lp.SendCurrentCredits())
            return
        res = await self._xact(framing.encode_general_poll(self.address), None, quiet_ok=self.rte_active)
        reply = res.reply
        if isinstance(reply, framing.ExceptionReply):
            if self.rte_active:
                # A lone legacy code in RTE mode: the EGM left RTE mode (a power cycle does that).
                self._log.info("EGM left RTE mode; enabling it again", code=reply.code)
                self.rte_active = False
                self._queue("rte", self._set_rte)
            if reply.code != 0:
                self._on_exception(reply.code)
        elif isinstance(reply, framing.RteEvent):
            self._on_exception(reply.code)

    def _on_exception(self, code: int) -> None:
        """Immediate reactions; the ExceptionFact itself is emitted when the line confirms it."""
        if code == ExceptionCode.HANDPAY_PENDING:
            self._queue("handpay", self._read_handpay)
        elif code == ExceptionCode.CASHOUT_TICKET_PRINTED:
            self._queue("ticket", self._read_ticket)
        elif code == ExceptionCode.OPERATOR_CHANGED_OPTIONS and self.config.identity:
            self._queue("identity", self._read_identity)
        elif code == ExceptionCode.AC_POWER_APPLIED:
            self._queue("rte", self._set_rte)
        if code in SIGNIFICANT_EXCEPTIONS:
            self._queue_meters(f"event:{code:02X}")

    # ---- reads -----------------------------------------------------------------------------------
    async def _set_rte(self) -> None:
        """LP 0E: RTE on if configured (and the EGM ACKs), else explicitly off.

        An EGM still in RTE mode (the link came back, the agent restarted) answers LP 0E with its
        queued events first, up to a full FIFO of them after an outage: asked again while it does,
        so the queue's length never decides that RTE is off (the agent would then poll in legacy
        mode, take the EGM's RTE silence for missed polls, and drop the link)."""
        want = 1 if self.config.rte else 0
        msg = lp.RealTimeEventReporting(enable=want)
        reply: framing.EgmReply | None = None
        for _ in range(RTE_ENABLE_ROUNDS):
            events = self._rte_events
            reply = await self._long(msg, retries=1)
            if reply is not None or self._rte_events == events:
                break
        self.rte_active = bool(want) and isinstance(reply, framing.Ack)
        self._log.info("real-time event reporting", active=self.rte_active)

    async def _read_identity(self) -> None:
        info = await self._read(lp.SendMachineInfo(), lp.MachineInfo)
        if info is None:
            self._log.warning("no LP 1F answer; identity unknown")
            self._identity_again()
            return
        version = await self._read(lp.SendSasVersion(), lp.SasVersion, retries=1)
        count = await self._read(lp.SendNumberOfGames(), lp.NumberOfGames, retries=1)
        enabled = await self._read(lp.SendEnabledGames(), lp.EnabledGames, retries=1)
        numbers: tuple[int, ...] = enabled.games if enabled is not None else tuple(
            range(1, (count.count if count is not None else 0) + 1))
        games: list[F.GameIdentity] = []
        for number in numbers:
            cfg = await self._read(lp.SendGameConfiguration(game=number), lp.GameConfiguration, retries=1)
            if cfg is not None:
                games.append(F.GameIdentity(number, cfg.game_id, cfg.paytable_id,
                                            DENOMINATION_CENTS.get(cfg.denomination), cfg.max_bet, cfg.base_percent))
        features = await self._read(lp.SendEnabledFeatures(game=0), lp.EnabledFeatures, retries=1)
        self.fast_polling = bool(features is not None and features.features3 & lp.FEATURES3_MAX_POLLING_40MS)
        if features is None:
            self._identity_again()  # the 40 ms cadence depends on it
        # Last, so that no 8C can be confirmed between this reply and the Identity fact (events are
        # confirmed by the next poll): the selected game it carries is the newest the agent knows.
        selected = await self._read(lp.SendSelectedGame(), lp.SelectedGame, retries=1)
        ident = self._fact(
            F.Identity, game_id=info.game_id, additional_id=info.additional_id, paytable_id=info.paytable_id,
            base_percent=info.base_percent, accounting_denomination_cents=DENOMINATION_CENTS.get(info.denomination),
            max_bet=info.max_bet, sas_version=version.version if version else "",
            serial=version.serial if version else "", game_count=count.count if count else 0,
            enabled_games=numbers, games=tuple(games), fast_polling=self.fast_polling, rte=self.rte_active,
            selected_game=selected.game if selected is not None else None)
        self.identity = ident
        self._emit(ident)
        self._log.info("identity", game_id=info.game_id, serial=ident.serial, games=len(games),
                       fast_polling=self.fast_polling)

    async def _meters_job(self, reason: str) -> None:
        await self._read_meters(reason)

    async def _read_meters(self, reason: str) -> F.MetersSnapshot | None:
        order = ["6F", "2F", "1C"] if self.config.meter_poll == "auto" else [self.config.meter_poll]
        # Start from the best source this EGM ever answered (skip what it does not support), but a
        # read that fell back once (a garbled 6F) does not make the fallback the rule: LP 1C lacks
        # the bill and ticket meters, so every later snapshot would leave cash unjudged.
        sources = order[order.index(self._meter_source):] if self._meter_source in order else order
        for source in sources:
            read = await self._meters_via(source)
            if read is not None:
                values, stamps = read
                if self._meter_source not in order or order.index(source) < order.index(self._meter_source):
                    self._meter_source = source
                denom = self.identity.accounting_denomination_cents if self.identity else None
                snap = self._fact(F.MetersSnapshot, reason=reason, source=source, game=0,
                                  accounting_denomination_cents=denom,
                                  meters=tuple(F.Meter(code, meter_name(code), value, meter_unit(code),
                                                       stamps.get(code))
                                               for code, value in sorted(values.items())))
                await self._run_job("ticket")
                self._emit(snap)
                return snap
        self._log.warning("meters unreadable", reason=reason)
        return None

    async def _meters_via(self, source: str) -> tuple[dict[int, int], dict[int, float]] | None:
        """Meter values by code, and when the reply carrying each arrived (see :class:`F.Meter`;
        only in RTE mode, where a meter reply proves the EGM's event queue was empty)."""
        codes = self.config.meter_codes
        values: dict[int, int] = {}
        stamps: dict[int, float] = {}
        if source == "1C":
            m = await self._read(lp.SendMeters1C(), lp.Meters1C, retries=1)
            if m is None:
                return None
            for name, code in METERS_1C:
                if code is not None:
                    values[code] = getattr(m, name)
                    if self.rte_active:
                        stamps[code] = self._reply_mono
            return values, stamps
        size = 12 if source == "6F" else 10
        for i in range(0, len(codes), size):
            chunk = tuple(codes[i:i + size])
            if source == "6F":
                m = await self._read(lp.SendExtendedMeters(game=0, codes=chunk), lp.ExtendedMeters, retries=1)
            else:
                m = await self._read(lp.SendSelectedMeters(game=0, codes=chunk), lp.SelectedMeters, retries=1)
            if m is None:
                return None
            values.update(dict(m.meters))
            if self.rte_active:
                stamps.update(dict.fromkeys(dict(m.meters), self._reply_mono))
        return values, stamps

    async def _read_handpay(self, attempt: int = 1) -> None:
        info = await self._read(lp.SendHandpayInfo(), lp.HandpayInfo)
        if info is None:
            if self._again("handpay", attempt, self._read_handpay):
                return
            self._log.warning("handpay pending but LP 1B unanswered")
            return
        self._emit(self._fact(F.HandpayInfo, progressive_group=info.progressive_group, level=info.level,
                              amount_cents=info.amount, partial_pay_cents=info.partial_pay,
                              reset_id=info.reset_id))

    async def _read_ticket(self, attempt: int = 1) -> None:
        info = await self._read(lp.SendTicketInfo(), lp.TicketInfo)
        if info is None:
            if self._again("ticket", attempt, self._read_ticket):
                return
            self._log.warning("ticket printed but LP 3D unanswered")
            return
        self._emit(self._fact(F.TicketInfo, validation_number=info.validation_number, amount_cents=info.amount))

    def _again(self, name: str, attempt: int, read: Callable[[int], Awaitable[None]]) -> bool:
        """A read the EGM's queued events kept answering (a busy machine at a fast pace) is asked
        again later, up to :data:`READ_TRIES` times: its detail (the ticket's validation number, the
        handpay's kind) would otherwise be lost, and its money carried by a ``missed`` record alone."""
        if attempt >= READ_TRIES or not self.link_up:
            return False
        self._log.info("read lost to queued events; asked again", read=name, attempt=attempt)
        self._queue(name, lambda: read(attempt + 1))
        return True

    async def _sync_clock(self) -> None:
        """Read the EGM clock (LP 7E), then set it to ours (LP 7F, addressed so it is ACKed)."""
        read = await self._read(lp.SendDateTime(), lp.DateTime, retries=1)
        egm_time = None
        if read is not None:
            try:
                egm_time = from_sas(read.date, read.time)
            except SASError:
                egm_time = None
        now = dt.datetime.now().replace(microsecond=0)
        date, tod = to_sas(now)
        reply = await self._long(lp.SetDateTime(date=date, time=tod), retries=1)
        drift = (egm_time - now).total_seconds() if egm_time is not None else None
        self._emit(self._fact(F.ClockRead, egm_time=egm_time, agent_time=now, drift_seconds=drift,
                              set=isinstance(reply, framing.Ack)))


__all__ = ["METERS_1C", "READ_TRIES", "RTE_ENABLE_ROUNDS", "SIGNIFICANT_EXCEPTIONS", "SasReads"]
