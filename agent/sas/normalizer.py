"""SAS facts → the event log's records (design.md "Event model"), with money reconciled to meters.

The normalizer is pure and synchronous: :meth:`Normalizer.feed` takes one
:mod:`agent.sas.facts` fact (one ordered stream per device; streams of many devices may be
interleaved) and returns the :class:`~agent.pipeline.drafts.EventDraft` s it implies, in order.
:meth:`Normalizer.tick` handles time: it returns :class:`~agent.pipeline.drafts.SnapshotRequest` s
at the gaming-day boundary (the caller reads the meters; the next snapshot is tagged
``gaming_day_close``).

Money (protocols/sync/money.py is the contract):

* amounts are integer minor units: accounting credits × ``accounting_denomination_cents``;
  SAS cent amounts (tickets, handpays, bills) are taken as minor units, i.e. the hall's currency
  has two decimals (an assumption SAS itself makes);
* ``game.bet`` at RTE 7E, ``game.win``/``game.loss`` and ``game.ended`` at RTE 7F;
* a hand-paid jackpot is one ``game.win`` with ``paid_by: "handpay"`` emitted at the handpay reset
  (52), when the machine's jackpot meter moves, plus a ``handpay`` record of kind ``jackpot``
  (contributes nothing); the 7F of that game carries the same win and is therefore *not* a
  machine-paid ``game.win``;
* ``bill.accepted`` (4F data or the specific-bill codes), ``ticket.printed`` (LP 3D after 3D),
  ``handpay`` of kind ``cancelled_credits`` (at 52) are cash;
* without RTE data (legacy 7E/7F) bets and machine-paid wins come from the coin-in/coin-out meter
  deltas at each snapshot (``source: "meters"``); rounds still come from each 7F;
* whatever the meters moved and the events did not report becomes an ``integration`` record of
  kind ``missed`` (see :mod:`.ledger` for the settle time that prevents false ones), and
  events exceeding the meters an ``integration`` of kind ``anomaly`` without money (judged one
  snapshot late: a snapshot is read over several polls, and events confirmed meanwhile are fed
  before it although its meters may predate them);
* an RTE game is placed on the coin-in meter by its 7E (:meth:`.ledger.Ledger.place`). One that
  arrives after a ``missed`` record already covered its window (it waited in the EGM's queue) is
  *late*: each of its money drafts becomes an ``integration`` of kind ``late`` (``event``, ``data``:
  the draft it would have been; no money) as long as the epoch's ``missed`` records hold that
  much, so the money is counted once, by the record, and never corrected afterwards. A game placed
  in the baseline (queued at connect) is emitted as usual but not reconciled against this epoch.

Crash safety (:mod:`.checkpoint`): :meth:`Normalizer.take_checkpoints` serializes the devices whose
state changed since the previous call; the caller commits them in the same transaction as the
drafts fed meanwhile, so a checkpoint always matches exactly the committed events. After a crash,
:meth:`Normalizer.restore` brings that state back: facts read after the checkpoint are lost (the
EGM will not send them again) but their meters moved, so the ledger — continued, not rebaselined —
declares them ``missed`` once the first snapshots after the restart settle (reason
``agent_restart``). On the first fact after a restore the settle time starts again (the EGM's
queue drains only once it is polled again) and, if the wall clock went back meanwhile, the
checkpoint's times go back with it. An open round survives: its 7F, still queued in the EGM,
ends it as usual; if that 7F was read but lost, the next 7E replaces the round and the win and
round show up as ``missed``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

import structlog

from protocols.sas.exceptions import (
    BILL_CODES,
    BILL_DENOMINATION_CODES,
    DOOR_CODES,
    FAULT_CATEGORIES,
    POWER_OFF_DOORS,
    SERVICE_KINDS,
    BillAcceptedData,
    ExceptionCode,
    GameEndedData,
    GameSelectedData,
    GameStartedData,
    Significance,
    codes_with,
)
from protocols.sync.gamingday import DayRule
from protocols.sync.vocabulary import is_missed, money_slot

from ..pipeline.drafts import EventDraft, SnapshotRequest, micros
from . import checkpoint
from . import facts as F
from .device_state import DeviceState, HeldWin, OpenRound
from .ledger import GAME_QUANTITIES, MONEY_KEY, QUANTITIES, Game, Observation, pick_meter

log = structlog.get_logger("agent.pipeline")

HANDPAY_LEVEL_CANCELLED_CREDITS: Final = 0x80
CENTS_PER_MAJOR: Final = 100

# One classification of exception codes (protocols.sas.exceptions): what each code is recorded as.
ERROR_CATEGORIES: Final = FAULT_CATEGORIES
"""Exceptions that are faults of the machine (``game.error``); other status goes to ``device.status``."""
IGNORED_CODES: Final = codes_with(Significance.NOISE)
RESET_CODES: Final = codes_with(Significance.METERS_RESET)


class Normalizer:
    """Turns facts into event drafts and keeps every device's money equal to its meters.

    ``currency``: the hall's ISO 4217 code (two-decimal currencies; SAS cents are minor units).
    ``gaming_day_start``: local time of day at which a gaming day ends and the next begins.
    ``tz``: the hall's time zone for that boundary; None means the host's local time zone.
    ``default_denomination_cents``: used (with a warning) while a device's accounting
    denomination is unknown (no Identity yet); the simulator and most US machines use 1.
    ``settle_seconds``: how long after a snapshot (and after the last link-up: a queue drains only
    while polled) its meters are compared with the events for ``missed`` (exceptions still queued
    in the EGM when the meters were read arrive meanwhile; an RTE game arriving even later is
    recognised by its coin-in meter and absorbed, see the module docstring).
    """

    def __init__(self, currency: str, *, gaming_day_start: dt.time = dt.time(6, 0),
                 tz: dt.tzinfo | None = None, default_denomination_cents: int = 1,
                 settle_seconds: float = 30.0) -> None:
        if len(currency) != 3 or not currency.isascii() or not currency.isupper():
            raise ValueError(f"currency must be an ISO 4217 code like 'EUR', got {currency!r}")
        self.currency = currency
        self.gaming_day_start = gaming_day_start
        self.tz = tz
        self.day_rule: DayRule | None = None
        """The hall's gaming day from HQ's standing data; when set it wins over ``tz``/``gaming_day_start``
        (the day central's reports use: :mod:`protocols.sync.gamingday`)."""
        self.default_denomination_cents = default_denomination_cents
        self.settle_seconds = settle_seconds
        self.devices: dict[str, DeviceState] = {}
        self._gaming_day: dt.date | None = None
        self._dirty: set[str] = set()   # devices whose state changed since the last take_checkpoints()

    # ---- public API ---------------------------------------------------------------------------------

    def feed(self, fact: F.Fact) -> list[EventDraft]:
        """The drafts one fact implies, in order (possibly none)."""
        state = self.devices.get(fact.device)
        if state is None:
            state = self.devices[fact.device] = DeviceState(fact.device)
            state.ledger.settle = self.settle_seconds
        if state.resumed:
            self._resume(state, fact)
        out: list[EventDraft] = []
        handler = _HANDLERS.get(type(fact))
        if handler is not None:
            handler(self, state, fact, out)
        state.last_wall = fact.wall
        self._dirty.add(fact.device)
        return out

    def take_checkpoints(self) -> dict[str, bytes]:
        """The serialized state of every device changed since the previous call (by :meth:`feed`
        or :meth:`tick`), to be committed with the drafts fed since: device → checkpoint bytes."""
        dirty, self._dirty = self._dirty, set()
        return {device: checkpoint.dump(self.devices[device], self._gaming_day)
                for device in sorted(dirty) if device in self.devices}

    def restore(self, checkpoints: Mapping[str, bytes]) -> list[str]:
        """Resume from the last committed checkpoints (at agent start, before any fact is fed).

        Returns the devices whose checkpoint could not be used (garbage, unknown version): they
        start afresh — their next snapshot is a new baseline — after a warning. Never raises."""
        unreadable: list[str] = []
        days: list[dt.date] = []
        try:
            items = list(checkpoints.items())
        except Exception as exc:
            log.warning("checkpoints unreadable; every device starts afresh", error=repr(exc))
            return unreadable
        for device, blob in items:
            try:
                state, day = checkpoint.load(device, bytes(blob), self.settle_seconds)
            except Exception as exc:   # whatever the bytes are, the agent must start
                log.warning("checkpoint unreadable; reconciliation of this device starts afresh",
                            device=str(device), error=str(exc))
                unreadable.append(str(device))
                self.devices.pop(str(device), None)
                continue
            state.resumed = True
            self.devices[device] = state
            self._dirty.discard(device)
            if day is not None:
                days.append(day)
            log.info("device state restored from its checkpoint", device=device, baseline=state.ledger.active,
                     open_round=state.round is not None)
        if days and self._gaming_day is None:
            self._gaming_day = max(days)   # a day that ended while the agent was down still closes
        return unreadable

    def tick(self, now_wall: float) -> list[SnapshotRequest]:
        """Time passes: at the gaming-day boundary, ask for a snapshot of every known device.

        The first call only learns the current gaming day. Devices asked get their next snapshot
        tagged ``reason: "gaming_day_close"`` and ``gaming_day`` (the day that ended)."""
        requests = self._judging_requests(now_wall)
        day = self.gaming_day(now_wall)
        previous, self._gaming_day = self._gaming_day, day
        if previous is None or day <= previous:
            return requests
        closing = previous.isoformat()
        requests = [r for r in requests if r.device not in self.devices]
        for device, state in self.devices.items():
            state.close_pending = closing
            self._dirty.add(device)
            requests.append(SnapshotRequest(device, "gaming_day_close", closing))
        log.info("gaming day closed", gaming_day=closing, devices=len(requests))
        return requests

    def books_open(self, device: str) -> bool:
        """Whether some money of ``device`` is not yet judged against its meters: money moved (or
        events were lost) since its last snapshot, or that snapshot moved the meters and has not
        been judged yet, or wins are held for a pending handpay. An idle machine's books close by
        themselves (:meth:`tick`)."""
        state = self.devices.get(device)
        if state is None or not state.ledger.active:
            return state is not None
        return (state.activity_wall is not None or bool(state.held_wins)   # held wins are not judged
                or state.ledger.unjudged(float("inf")))

    def _judging_requests(self, now_wall: float) -> list[SnapshotRequest]:
        """Snapshots that close the books of a machine gone idle, where no scheduled or significant
        snapshot may come for a long time and what its last window lost would stay a silent
        difference: ``idle`` once money moved (or events were lost) since the last snapshot and
        nothing happened for a settle time, so the meters are read after the last game; then
        ``settle`` once that newest snapshot has settled unjudged, so it is judged. Each device is
        asked at most once per settle time (a read that failed is asked again)."""
        requests = []
        for device, state in self.devices.items():
            if state.reset_pending or not state.link_up or not state.ledger.active:
                continue
            asked = state.judge_asked_at
            if asked is not None and 0 <= now_wall - asked < self.settle_seconds:
                continue
            active = state.activity_wall
            if active is not None and now_wall - active >= self.settle_seconds:
                reason = "idle"
            elif state.ledger.unjudged(now_wall, state.link_up_since):
                reason = "settle"
            else:
                continue
            state.judge_asked_at = now_wall
            requests.append(SnapshotRequest(device, reason))
        return requests

    def gaming_day(self, wall: float) -> dt.date:
        """The gaming day a moment belongs to: the local date, shifted back by the day's start."""
        if self.day_rule is not None:
            return self.day_rule.day_of(int(wall * 1_000_000))
        local = dt.datetime.fromtimestamp(wall, self.tz) if self.tz else dt.datetime.fromtimestamp(wall)
        start = dt.timedelta(hours=self.gaming_day_start.hour, minutes=self.gaming_day_start.minute,
                             seconds=self.gaming_day_start.second)
        return (local - start).date()

    # ---- helpers ------------------------------------------------------------------------------------

    def _emit(self, state: DeviceState, out: list[EventDraft], fact: F.FactBase, type_: str,
              data: dict[str, Any], *, game: Game | None = None, count: bool = True) -> None:
        """Append a draft and count its money in the device's ledger (``missed`` is counted by
        the reconciliation itself, per ledger quantity). ``game``: the placed game it belongs to;
        ``count=False`` for a game of the baseline (its money is real but not this epoch's)."""
        out.append(EventDraft(state.device, type_, None, micros(fact.wall), data))
        quantity = _quantity(type_, data)
        if quantity is None:
            return
        mono = fact.mono or None
        if isinstance(fact, F.TicketInfo) and state.ticket_mono is not None:
            mono = state.ticket_mono   # the ticket's meter moved before its 3D, read before LP 3D
        value = _value(quantity, data)
        state.logged.append((quantity, value, mono))
        if count:
            state.ledger.report(quantity, value, fact.wall, game, mono=mono, reset_pending=state.reset_pending)
            state.activity_wall = fact.wall

    def _emit_game(self, state: DeviceState, out: list[EventDraft], fact: F.FactBase, type_: str,
                   data: dict[str, Any], game: Game | None) -> None:
        """Emit a draft of an RTE game according to where its 7E placed it (see the module docstring).

        A late game's money is already in a ``missed`` record: the draft is kept for the log as an
        ``integration`` of kind ``late`` (no money) while the records hold that much; beyond that
        it was not covered and counts as usual."""
        if game is None or game.status == "open":
            self._emit(state, out, fact, type_, data, game=game)
            return
        if game.status == "before":
            # Its wager is in the baseline; its end is too unless it came after that meter's read.
            quantity = _quantity(type_, data)
            if quantity is not None and state.ledger.ended_after_read(quantity, game.end_at):
                self._emit(state, out, fact, type_, data, game=game)
            else:
                self._emit(state, out, fact, type_, data, count=False)
            return
        quantity = _quantity(type_, data)
        if quantity is None or not state.ledger.absorb(quantity, _value(quantity, data)):
            self._emit(state, out, fact, type_, data, game=game)
            return
        log.warning("late event absorbed by the missed record that covered it", device=state.device,
                    type=type_, quantity=quantity, coin_in=game.pos)
        self._emit(state, out, fact, "integration", {
            "kind": "late", "event": type_, "data": data, "quantity": quantity, "coin_in": game.pos,
            "reason": "covered_by_missed"})

    def _denom(self, state: DeviceState) -> int:
        if state.denom is None:
            if not state.denom_warned:
                log.warning("accounting denomination unknown; assuming the default", device=state.device,
                            cents=self.default_denomination_cents)
                state.denom_warned = True
            return self.default_denomination_cents
        return state.denom

    def _money(self, amount: int, **extra: Any) -> dict[str, Any]:
        return {"amount": amount, "currency": self.currency, **extra}

    def _resume(self, state: DeviceState, fact: F.FactBase) -> None:
        """The first fact after a restore: the device is polled again from now (so the settle time
        starts again: the EGM's queue drains from here), and a wall clock set back while the agent
        was down moves the checkpoint's times back with it (else its snapshots would settle only
        once the clock caught up). The ``missed`` records that follow name the restart as a reason."""
        state.resumed = False
        last = state.last_wall
        if last is not None and fact.wall < last:
            log.warning("wall clock went back since the checkpoint; its times are moved back with it",
                        device=state.device, seconds=round(last - fact.wall, 3))
            state.ledger.shift_times(fact.wall - last)
        state.link_up_since = fact.wall
        state.hints.add("agent_restart")

    # ---- link, identity, clock, commands ------------------------------------------------------------

    def _link_up(self, state: DeviceState, fact: F.LinkUp, out: list[EventDraft]) -> None:
        state.link_up_since = fact.wall
        state.link_up = True
        self._emit(state, out, fact, "device.status", {"status": "online", "online": True, "reason": fact.reason})

    def _link_down(self, state: DeviceState, fact: F.LinkDown, out: list[EventDraft]) -> None:
        state.hints.add("link_down")
        state.link_up = False
        self._emit(state, out, fact, "device.status",
                   {"status": "offline", "online": False, "missed_polls": fact.missed})

    def _identity(self, state: DeviceState, fact: F.Identity, out: list[EventDraft]) -> None:
        if fact.accounting_denomination_cents:
            state.denom = fact.accounting_denomination_cents
        state.rte_mode = fact.rte
        if fact.selected_game and fact.selected_game != state.game:
            # LP 55 at connect: the game selected before the agent saw any 8C (an open round keeps its own)
            state.game = fact.selected_game
            self._emit(state, out, fact, "device.status",
                       {"status": "game_selected", "game": state.game, "source": "LP 55"})
        key = (fact.game_id, fact.serial, fact.paytable_id, fact.accounting_denomination_cents, fact.sas_version,
               fact.enabled_games, fact.rte)
        if key == state.identity_key:
            return
        state.identity_key = key
        self._emit(state, out, fact, "device.status", {
            "status": "identity", "game_id": fact.game_id, "serial": fact.serial, "paytable_id": fact.paytable_id,
            "sas_version": fact.sas_version, "accounting_denomination_cents": fact.accounting_denomination_cents,
            "enabled_games": list(fact.enabled_games), "rte": fact.rte,
            "games": [{"number": g.number, "game_id": g.game_id, "paytable_id": g.paytable_id,
                       "denomination_cents": g.denomination_cents, "max_bet": g.max_bet} for g in fact.games],
        })

    def _clock(self, state: DeviceState, fact: F.ClockRead, out: list[EventDraft]) -> None:
        drift = None if fact.drift_seconds is None else round(fact.drift_seconds * 1000)
        self._emit(state, out, fact, "device.status", {"status": "clock", "drift_ms": drift, "set": fact.set})

    def _command(self, state: DeviceState, fact: F.CommandResult, out: list[EventDraft]) -> None:
        self._emit(state, out, fact, "integration", {
            "kind": "response", "action": fact.action, "game": fact.game, "acked": fact.acked, "detail": fact.detail})

    # ---- exceptions ---------------------------------------------------------------------------------

    def _exception(self, state: DeviceState, fact: F.ExceptionFact, out: list[EventDraft]) -> None:
        code = fact.code
        hex_code = f"{code:02X}"
        if code == ExceptionCode.GAME_STARTED:
            self._game_started(state, fact, out)
        elif code == ExceptionCode.GAME_ENDED:
            self._game_ended(state, fact, out)
        elif code == ExceptionCode.GAME_SELECTED:
            if isinstance(fact.data, GameSelectedData):
                state.game = fact.data.game_number
                self._emit(state, out, fact, "device.status", {"status": "game_selected", "game": state.game})
        elif code == ExceptionCode.BILL_ACCEPTED or code in BILL_CODES:
            self._bill(state, fact, out)
        elif code == ExceptionCode.HANDPAY_PENDING:
            state.handpay_pending = True
            self._emit(state, out, fact, "device.status", {"status": "handpay_pending", "code": hex_code})
        elif code == ExceptionCode.HANDPAY_RESET:
            self._handpay_reset(state, fact, out)
        elif code == ExceptionCode.CASHOUT_TICKET_PRINTED:
            state.ticket_mono = fact.mono  # the ticket itself comes as TicketInfo (LP 3D), read right after
        elif code in DOOR_CODES:
            door, opened = DOOR_CODES[code]
            self._emit(state, out, fact, "device.door", {"door": door, "open": opened, "code": hex_code})
        elif code in POWER_OFF_DOORS:
            self._emit(state, out, fact, "device.door",
                       {"door": POWER_OFF_DOORS[code], "open": True, "power_off": True, "code": hex_code})
        elif code in SERVICE_KINDS:
            self._emit(state, out, fact, "service", {**SERVICE_KINDS[code], "code": hex_code, "name": fact.name})
            if code in RESET_CODES:
                self._memory_reset(state, fact, out)
        elif code in ERROR_CATEGORIES:
            self._emit(state, out, fact, "game.error",
                       {"code": hex_code, "name": fact.name, "category": ERROR_CATEGORIES[code]})
            if code == ExceptionCode.CMOS_RAM_ERROR_NO_DATA_RECOVERED:   # the meters may be gone too
                state.reset_pending = True
        elif code == ExceptionCode.EXCEPTION_BUFFER_OVERFLOW:
            state.hints.add("buffer_overflow")
            state.activity_wall = fact.wall
            log.warning("EGM exception buffer overflowed: events were lost", device=state.device)
            self._emit(state, out, fact, "integration", {"kind": "buffer_overflow", "code": hex_code})
        elif code in IGNORED_CODES:
            pass
        else:
            self._emit(state, out, fact, "device.status", {"status": "exception", "code": hex_code, "name": fact.name})

    def _game_started(self, state: DeviceState, fact: F.ExceptionFact, out: list[EventDraft]) -> None:
        if state.round is not None:
            log.warning("game started while the previous one never ended (7F lost)", device=state.device)
            state.hints.add("lost_game_end")
        data = fact.data
        if not isinstance(data, GameStartedData):
            state.legacy_in_interval = True
            state.round = OpenRound(state.game, None, None)
            return
        state.rte_mode = True
        denom = self._denom(state)
        amount = data.credits_wagered * denom
        placed = state.ledger.place(data.coin_in_meter, data.credits_wagered, denom, fact.wall,
                                    reset_pending=state.reset_pending)
        if placed.status == "before":
            log.info("game from before the baseline", device=state.device, coin_in_meter=data.coin_in_meter)
        state.round = OpenRound(state.game, amount, data.credits_wagered, placed)
        self._emit_game(state, out, fact, "game.bet", self._money(
            amount, game=state.game, credits=data.credits_wagered, coin_in_meter=data.coin_in_meter, source="rte"),
            placed)

    def _game_ended(self, state: DeviceState, fact: F.ExceptionFact, out: list[EventDraft]) -> None:
        rnd, state.round = state.round, None
        game = rnd.game if rnd is not None else state.game
        bet = rnd.bet if rnd is not None else None
        placed = rnd.placed if rnd is not None else None
        data = fact.data
        if not isinstance(data, GameEndedData):
            state.legacy_in_interval = True
            self._emit(state, out, fact, "game.ended", {"game": game, "source": "exception"})
            return
        state.rte_mode = True
        if placed is not None:
            placed.end_at = fact.mono
        if rnd is None:
            state.hints.add("lost_game_start")
        win = data.win_amount * self._denom(state)
        paid_by = "machine"
        if win == 0:
            self._emit(state, out, fact, "game.loss", {"game": game, "bet": bet, "source": "rte"})
        elif state.handpay_pending and state.handpay_info is None:
            # 51 came first (priority exception): this win may be that jackpot or a machine-paid win
            # followed by a cash-out handpay. LP 1B, or the reset, will tell.
            state.held_wins.append(HeldWin(win, game, micros(fact.wall)))
            paid_by = "pending"
        elif (state.handpay_pending and not state.handpay_bound and state.handpay_info is not None
              and state.handpay_info.level != HANDPAY_LEVEL_CANCELLED_CREDITS
              and state.handpay_info.amount_cents == win):
            state.handpay_bound = True
            paid_by = "handpay"
        else:
            self._emit_game(state, out, fact, "game.win",
                            self._money(win, game=game, paid_by="machine", source="rte"), placed)
        self._emit_game(state, out, fact, "game.ended",
                        {"game": game, "bet": bet, "win": win, "paid_by": paid_by, "source": "rte"}, placed)

    def _bill(self, state: DeviceState, fact: F.ExceptionFact, out: list[EventDraft]) -> None:
        data = fact.data
        extra: dict[str, Any]
        if isinstance(data, BillAcceptedData):
            major = BILL_DENOMINATION_CODES.get(data.denomination_code)
            if major is None:
                log.error("bill with an unknown denomination code", device=state.device, code=data.denomination_code)
                self._emit(state, out, fact, "integration",
                           {"kind": "format_error", "code": "4F", "detail": "unknown bill denomination code"})
                return
            last = state.bill_meters.get(data.denomination_code)
            if last is not None and data.bill_meter != 0 and data.bill_meter <= last:
                log.warning("bill reported twice", device=state.device, bill_meter=data.bill_meter)
                self._emit(state, out, fact, "integration",
                           {"kind": "duplicate", "code": "4F", "bill_meter": data.bill_meter})
                return
            state.bill_meters[data.denomination_code] = data.bill_meter
            extra = {"bill": major, "country_code": data.country_code, "bill_meter": data.bill_meter, "source": "rte"}
        elif fact.code in BILL_CODES:
            major = BILL_CODES[fact.code]
            extra = {"bill": major, "source": "exception"}
        else:
            log.warning("bill accepted without its value; the meters will tell", device=state.device)
            return
        amount = major * CENTS_PER_MAJOR
        self._open_session(state, fact, out, "bill")
        self._emit(state, out, fact, "bill.accepted", self._money(amount, code=f"{fact.code:02X}", **extra))

    # ---- handpays and tickets -----------------------------------------------------------------------

    def _handpay_info(self, state: DeviceState, fact: F.HandpayInfo, out: list[EventDraft]) -> None:
        if fact.amount_cents <= 0:
            log.info("LP 1B: no handpay pending (already reset?)", device=state.device)
            if state.handpay_pending:
                self._handpay_gone(state, fact, out)
            return
        state.handpay_pending = True
        state.handpay_info = fact
        cancelled = fact.level == HANDPAY_LEVEL_CANCELLED_CREDITS
        held, state.held_wins = state.held_wins, []
        for win in held:
            if not cancelled and not state.handpay_bound and win.amount == fact.amount_cents:
                state.handpay_bound = True   # the jackpot: counted at the reset (52)
            else:
                self._emit(state, out, fact, "game.win",
                           self._money(win.amount, game=win.game, paid_by="machine", source="rte", delayed=True))
        self._emit(state, out, fact, "device.status", self._money(
            fact.amount_cents, status="handpay_info", kind="cancelled_credits" if cancelled else "jackpot",
            level=fact.level, progressive_group=fact.progressive_group, partial_pay_cents=fact.partial_pay_cents))

    def _handpay_gone(self, state: DeviceState, fact: F.HandpayInfo, out: list[EventDraft]) -> None:
        """A 51 whose handpay the EGM no longer has: its reset (52) was reported first (both latched
        while nobody polled; 52 ranks above 51) or lost. Nothing is pending any more: the wins held
        for it are released as machine-paid (wins are wins; a jackpot among them is moved to the
        jackpot meter's side by the reconciliation). Left pending, every later win was held and the
        machine's wins were never judged again — a silent loss of all of them."""
        held = state.held_wins
        state.handpay_pending, state.handpay_info, state.handpay_bound, state.held_wins = False, None, False, []
        log.warning("handpay pending but the EGM has none; its wins are released", device=state.device,
                    wins=[w.amount for w in held])
        for win in held:
            self._emit(state, out, fact, "game.win",
                       self._money(win.amount, game=win.game, paid_by="machine", source="rte", delayed=True))
        self._emit(state, out, fact, "device.status", {"status": "handpay_cleared", "reason": "not_pending"})

    def _handpay_reset(self, state: DeviceState, fact: F.ExceptionFact, out: list[EventDraft]) -> None:
        info, held = state.handpay_info, state.held_wins
        state.handpay_pending, state.handpay_info, state.handpay_bound, state.held_wins = False, None, False, []
        if info is None:
            # LP 1B never answered with the amount. A held win then most likely was the jackpot; either
            # way its amount is right (wins are wins), and a cash-out handpay shows up as `missed`.
            for win in held:
                self._emit(state, out, fact, "game.win",
                           self._money(win.amount, game=win.game, paid_by="handpay", source="rte", delayed=True))
            log.warning("handpay reset with its amount unknown", device=state.device)
            self._emit(state, out, fact, "device.status", {"status": "handpay_reset", "kind": "unknown"})
            return
        for win in held:  # not expected (LP 1B releases them), kept for safety
            self._emit(state, out, fact, "game.win",
                       self._money(win.amount, game=win.game, paid_by="machine", source="rte", delayed=True))
        amount = info.amount_cents
        common = {"level": info.level, "progressive_group": info.progressive_group,
                  "partial_pay_cents": info.partial_pay_cents}
        if info.level == HANDPAY_LEVEL_CANCELLED_CREDITS:
            self._emit(state, out, fact, "handpay", self._money(amount, kind="cancelled_credits", **common))
            self._close_session(state, fact, out, "handpay")
            return
        game = state.game
        self._emit(state, out, fact, "game.win", self._money(amount, game=game, paid_by="handpay", source="handpay"))
        self._emit(state, out, fact, "handpay", self._money(amount, kind="jackpot", game=game, **common))
        if 0x01 <= info.level <= 0x20:
            self._emit(state, out, fact, "jackpot", self._money(amount, game=game, paid_by="handpay", **common))

    def _ticket(self, state: DeviceState, fact: F.TicketInfo, out: list[EventDraft]) -> None:
        if fact.amount_cents <= 0:
            log.warning("LP 3D answered without a ticket", device=state.device)
            return
        if fact.validation_number == state.last_ticket:
            log.warning("ticket reported twice", device=state.device, validation=fact.validation_number)
            self._emit(state, out, fact, "integration", {"kind": "duplicate", "code": "3D",
                                                         "validation": f"{fact.validation_number:08d}"})
            return
        state.last_ticket = fact.validation_number
        self._emit(state, out, fact, "ticket.printed", self._money(
            fact.amount_cents, kind="cash_out", validation=f"{fact.validation_number:08d}"))
        state.ticket_mono = None
        self._close_session(state, fact, out, "ticket")

    # ---- sessions -----------------------------------------------------------------------------------

    def _open_session(self, state: DeviceState, fact: F.FactBase, out: list[EventDraft], reason: str) -> None:
        if state.session is not None:
            return
        state.session_count += 1
        state.session = f"{state.device}:{micros(fact.wall)}:{state.session_count}"
        self._emit(state, out, fact, "session.started", {"session": state.session, "reason": reason})

    def _close_session(self, state: DeviceState, fact: F.FactBase, out: list[EventDraft], reason: str) -> None:
        if state.session is None:
            return
        session, state.session = state.session, None
        self._emit(state, out, fact, "session.ended", {"session": session, "reason": reason})

    def _memory_reset(self, state: DeviceState, fact: F.FactBase, out: list[EventDraft]) -> None:
        """RAM clear: credits, the game in progress and a pending handpay are gone with the memory."""
        state.reset_pending = True
        state.round = None
        state.handpay_pending, state.handpay_info, state.handpay_bound = False, None, False
        if state.held_wins:
            log.error("RAM clear with unresolved wins; the meters are gone too", device=state.device,
                      wins=[w.amount for w in state.held_wins])
            state.held_wins = []
        state.bill_meters.clear()
        state.last_ticket = None
        state.ledger.unplaced.clear()   # their coin in is on the meters that were just wiped
        self._close_session(state, fact, out, "ram_clear")

    # ---- meters and reconciliation ------------------------------------------------------------------

    def _meters(self, state: DeviceState, fact: F.MetersSnapshot, out: list[EventDraft]) -> None:
        if fact.accounting_denomination_cents:
            state.denom = fact.accounting_denomination_cents
        denom = self._denom(state)
        values: dict[str, int] = {}
        for meter in fact.meters:
            values[meter.name] = meter.value * denom if meter.unit == "credits" else meter.value
        reason = fact.reason
        data: dict[str, Any] = {"reason": reason, "source": fact.source, "game": fact.game,
                                "denomination_cents": denom, "meters": values}
        if state.close_pending is not None:
            data.update(reason="gaming_day_close", trigger=reason, gaming_day=state.close_pending)
            state.close_pending = None
        if not values:
            log.warning("empty meter snapshot", device=state.device)
            return
        raw = fact.by_code()
        reads = {m.code: m.read_mono for m in fact.meters if m.read_mono is not None}
        unmetered = _unmetered(state.logged, raw, reads)
        state.logged = []
        if unmetered:
            data["unmetered"] = unmetered
        self._emit(state, out, fact, "meters.snapshot", data)
        state.activity_wall = None
        ledger = state.ledger
        obs = ledger.observe(raw, denom, fact.wall, force_reset=state.reset_pending and ledger.active, reads=reads)
        state.reset_pending = False
        if obs.rollovers:
            log.info("meters rolled over", device=state.device, quantities=obs.rollovers)
        if obs.rebaselined:
            if obs.why != "baseline":
                log.error("meters reset; reconciliation starts again from this snapshot", device=state.device,
                          why=obs.why)
                self._emit(state, out, fact, "integration", {"kind": "meters_reset", "detail": obs.why})
            state.legacy_in_interval = False
            state.hints = set()
        else:
            self._reconcile(state, fact, obs, out)
            ledger.commit_seen(fact.wall)
        state.last_snapshot_time = micros(fact.wall)
        credits = raw.get(0x0C)
        if credits is not None and state.round is None and not state.handpay_pending:
            if credits == 0:
                self._close_session(state, fact, out, "credits_zero")
            else:
                self._open_session(state, fact, out, "credits")

    def _reconcile(self, state: DeviceState, fact: F.MetersSnapshot, obs: Observation,
                   out: list[EventDraft]) -> None:
        """Compare the ledger with this snapshot; emit meter-derived bets/wins, `missed`, anomalies.

        Excess is judged on what was fed before the previous snapshot (``certain``): what was fed
        since may have happened while this snapshot was being read. ``missed`` is judged on the
        settled snapshot, leaving out games placed after it (they are the next window's)."""
        ledger = state.ledger
        meters_mode = state.legacy_in_interval or state.rte_mode is False
        wins_unknown = bool(state.held_wins)
        settled_at, settled = ledger.settled(fact.wall, state.link_up_since)
        window = settled.get("bets") if not meters_mode else None
        if not wins_unknown and {"wins_machine", "wins_handpay"} <= obs.available:
            _rebalance_wins(state)   # first: it moves wins in the games that ``later`` sums
        later = ledger.placed_after(window) if window is not None else {}
        missed: dict[str, int] = {}
        excess: dict[str, int] = {}
        derived: dict[str, int] = {}
        for name in QUANTITIES:
            if name not in obs.available:
                continue
            q = ledger.quantities[name]
            if q.certain > q.meters:
                extra = q.certain - q.meters
                q.excess += extra
                before = min(extra, q.grace)
                q.grace -= before
                if before:
                    # Events confirmed just after the baseline snapshot may have happened before it.
                    log.warning("events exceed the meters right after the baseline; attributed to before it",
                                device=state.device, quantity=name, excess=before)
                if extra > before:
                    excess[name] = extra - before
            if meters_mode and name in ("bets", "wins_machine"):
                if q.meters > q.effective:
                    derived[name] = q.meters - q.effective
            elif name in settled and not (wins_unknown and name.startswith("wins")):
                known = q.effective - (later.get(name, 0) if name in GAME_QUANTITIES else 0)
                if settled[name] > known:
                    missed[name] = settled[name] - known
                    q.reported += missed[name]
                    q.missed += missed[name]
        ledger.remember(fact.wall, obs.available)
        square = all(ledger.quantities[n].meters == ledger.quantities[n].effective for n in obs.available)
        state.legacy_in_interval = False
        if derived.get("bets"):
            self._emit(state, out, fact, "game.bet", self._money(derived["bets"], game=0, source="meters"))
        if derived.get("wins_machine"):
            self._emit(state, out, fact, "game.win",
                       self._money(derived["wins_machine"], game=0, paid_by="machine", source="meters"))
        for name, value in derived.items():
            ledger.quantities[name].missed += value   # stands for every game up to now, as a record does
        if meters_mode and "bets" in obs.available:
            ledger.declare(ledger.quantities["bets"].meters)
        elif window is not None:
            ledger.declare(window)
        hints = sorted(state.hints)
        if missed:
            totals: dict[str, int] = {}
            for name, value in missed.items():
                totals[MONEY_KEY[name]] = totals.get(MONEY_KEY[name], 0) + value
            log.warning("meters show activity the events missed", device=state.device, missed=missed, hints=hints)
            self._emit(state, out, fact, "integration", {
                "kind": "missed", **totals, "reason": ",".join(hints) or "unreported", "detail": missed,
                "meters_time": None if settled_at is None else micros(settled_at)})
        if excess:
            log.error("events exceed the meters: counted twice or meters wrong", device=state.device, excess=excess)
            self._emit(state, out, fact, "integration", {
                "kind": "anomaly", "reason": "events_exceed_meters", "excess": excess,
                "since": state.last_snapshot_time})
        if square:
            state.hints = set()   # all square: earlier trouble is accounted for


def _rebalance_wins(state: DeviceState) -> None:
    """A win labelled with the wrong payer (a handpay whose kind LP 1B never told) shows as excess
    on one wins meter and deficit on the other: move it across before judging either. Wins are
    wins in money.py; only the meter that moved differs (so a move never changes the money, even
    when the excess is only a win fed during the read; ``seen`` moves along with ``reported``)."""
    ledger = state.ledger
    machine = ledger.quantities["wins_machine"]
    handpay = ledger.quantities["wins_handpay"]
    for (over_name, over), (under_name, under) in ((("wins_handpay", handpay), ("wins_machine", machine)),
                                                    (("wins_machine", machine), ("wins_handpay", handpay))):
        shift = min(over.effective - over.meters, under.meters - under.effective)
        if shift > 0:
            over.reported -= shift
            over.seen -= shift
            under.reported += shift
            under.seen += shift
            ledger.reattribute(over_name, under_name, shift)
            log.info("win re-attributed between coin-out and jackpot meters", device=state.device, amount=shift)


def _unmetered(logged: list[tuple[str, int, float | None]], raw: dict[int, int],
               reads: dict[int, float]) -> dict[str, int]:
    """The money of drafts written before a snapshot that its meters do not contain yet, by money key
    (protocols.sync.money's sums): the snapshot's ``unmetered``, so that central compares each window's
    meter movement with exactly the events it contains. In RTE mode an event that arrived after the
    reply that read its meter happened after that read (the EGM answers with queued events first).
    Without read stamps (legacy mode) nothing is known to be outside, and nothing is listed."""
    out: dict[str, int] = {}
    for quantity, value, mono in logged:
        code = pick_meter(quantity, raw)[0]
        read = reads.get(code) if code is not None else None
        if mono is not None and read is not None and mono > read:
            key = MONEY_KEY[quantity]
            out[key] = out.get(key, 0) + value
    return out


def _value(quantity: str, data: dict[str, Any]) -> int:
    """What a draft adds to its ledger quantity: one round, or its amount."""
    return 1 if quantity == "rounds" else int(data["amount"])


_LEDGER_QUANTITY: Final[dict[tuple[str, str], str]] = {
    ("bill.accepted", "cash_in"): "cash_in_bills",
    ("ticket.redeemed", "cash_in"): "cash_in_tickets",
    ("ticket.printed", "cash_out"): "cash_out_tickets",
    ("handpay", "cash_out"): "cash_out_handpay",
}
"""Cash by the meter that counts it (a SAS machine writes no ``transfer``)."""


def _quantity(type_: str, data: dict[str, Any]) -> str | None:
    """The ledger quantity a draft contributes to: where protocols.sync.vocabulary puts its money
    (:func:`money_slot`, amount or not; ``missed`` records are counted by the reconciliation itself),
    split by the meter that counts it."""
    slot = money_slot(type_, data) if not is_missed(type_, data) else None
    if slot is None or slot in ("bets", "rounds"):
        return slot
    if slot == "wins":
        return "wins_machine" if data.get("paid_by") == "machine" else "wins_handpay"
    return _LEDGER_QUANTITY.get((type_, slot))


_HANDLERS: Final[dict[type, Any]] = {
    F.LinkUp: Normalizer._link_up,
    F.LinkDown: Normalizer._link_down,
    F.Identity: Normalizer._identity,
    F.ClockRead: Normalizer._clock,
    F.CommandResult: Normalizer._command,
    F.ExceptionFact: Normalizer._exception,
    F.HandpayInfo: Normalizer._handpay_info,
    F.TicketInfo: Normalizer._ticket,
    F.MetersSnapshot: Normalizer._meters,
}

__all__ = ["Normalizer"]
