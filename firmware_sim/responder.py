"""The EGM's SAS side, sans-IO: a host message (framed by ``protocols.sas.framing``) in, reply bytes out.

It owns the link-level rules a real EGM follows, each of which a host has to get right:

* the sync rule: after power-up or a loop break, polls to this address are ignored until a poll to
  another address or to address 0 has been seen ([S602] §3.3; switchable, on by default);
* implied ACK/NACK through :class:`protocols.sas.ackstate.EgmAckTracker`: a repeated identical poll
  gets the very same bytes again, and an exception leaves the queue only when a *different* poll
  acknowledges the reply that carried it;
* NACK (``addr|80``) on a bad CRC, silence for unsupported long polls and other addresses;
* in RTE mode, events replace the answer to general *and* long polls (the host re-queues the poll);
* the loop break: no address byte for ``chirp_after`` seconds → chirp every ``chirp_interval``.

Replies are plain bytes; the transport adds the wakeup marking of a chirp and applies faults.
Time is a parameter (``now``, monotonic seconds) so tests need no clock.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from protocols.sas import framing
from protocols.sas import longpolls as lp
from protocols.sas.ackstate import FINAL_NACK_COUNT, LOOP_BREAK_SECONDS, EgmAckTracker
from protocols.sas.clock import from_sas, to_sas
from protocols.sas.denominations import DENOMINATION_CENTS
from protocols.sas.errors import CRCError, SASError
from protocols.sas.exceptions import DENOMINATION_CODE_OF_BILL, RTE_DATA_LENGTH
from protocols.sas.framing import GeneralPoll, HostMessage, LongPollFrame, Unsupported

from . import meters as m
from .egm import Egm, Ticket
from .fifo import PendingException

METER_READS = frozenset({0x1C, 0x2F, 0x6F, 0xAF})
"""Long polls that read the meters: a host's first one is where its accounting of the machine starts."""


@dataclass
class LinkConfig:
    """Link-level behaviour; the defaults are what [S602] asks of a real machine."""

    sync_rule: bool = True
    chirp_after: float = LOOP_BREAK_SECONDS
    chirp_interval: float = 0.2
    rte_events_in_long_polls: bool = True


@dataclass(frozen=True, slots=True)
class _Sent:
    """A reply awaiting its implied ACK, and what to commit when it comes."""

    data: bytes
    item: PendingException | None = None
    ticket: Ticket | None = None

    @property
    def commits(self) -> bool:
        return self.item is not None or self.ticket is not None


_MONEY_CODES = frozenset({m.COIN_IN, m.COIN_OUT, m.JACKPOT, m.PAYTABLE_WIN})
_PER_DENOM_SINGLE = {0x11: m.COIN_IN, 0x12: m.COIN_OUT, 0x14: m.JACKPOT, 0x15: m.GAMES_PLAYED,
                     0x16: m.GAMES_WON, 0x17: m.GAMES_LOST}
_MACHINE_GAME_ID = "HS"


class SasResponder:
    """Answers one EGM's SAS traffic. :meth:`handle` per host message, :meth:`idle` for chirps."""

    def __init__(self, egm: Egm, config: LinkConfig | None = None, now: float = 0.0) -> None:
        self.egm = egm
        self.config = config or LinkConfig()
        self.address = egm.address
        self.tracker: EgmAckTracker[_Sent] = EgmAckTracker()
        self.synced = not self.config.sync_rule
        self.link_broken = False
        self._last_heard = now
        self._last_chirp = -1e18
        self._boot_seen = egm.boot_count
        self._gp_key = bytes((0x80 | self.address,))
        self.polls_answered = 0
        self.host_seen = False     # a host has polled this address (an EGM set to require its host waits for it)
        self.meters_read = False   # the host has read this machine's meters (its accounting starts there)
        self._handlers: dict[int, Callable[[lp.Message], _Sent | None]] = self._build_handlers()

    # ---- link state ----------------------------------------------------------------------------------

    def _check_boot(self, now: float) -> None:
        if self.egm.boot_count != self._boot_seen:
            self._boot_seen = self.egm.boot_count
            self.tracker.link_lost()
            self.synced = not self.config.sync_rule
            self._last_heard = now

    def idle(self, now: float) -> bytes | None:
        """The chirp (own address, to be sent with the wakeup bit) when one is due, else None."""
        if not self.egm.powered:
            return None
        self._check_boot(now)
        if now - self._last_heard < self.config.chirp_after:
            return None
        self._break_link()
        if now - self._last_chirp >= self.config.chirp_interval - 1e-9:
            self._last_chirp = now
            return bytes((self.address,))
        return None

    def _break_link(self) -> None:
        """No address byte for ``chirp_after``: the loop is broken ([S602] §4.2, §4.3)."""
        if not self.link_broken:
            self.link_broken = True
            self.tracker.link_lost()
            if self.config.sync_rule:
                self.synced = False

    def next_idle_check(self, now: float) -> float:
        """When :meth:`idle` may next have something to do (for the transport's timer)."""
        if self.link_broken:
            return max(now, self._last_chirp + self.config.chirp_interval)
        return max(now, self._last_heard + self.config.chirp_after)

    # ---- host messages -------------------------------------------------------------------------------

    def handle(self, msg: HostMessage, now: float) -> bytes | None:
        egm = self.egm
        if not egm.powered:
            return None
        self._check_boot(now)
        if now - self._last_heard >= self.config.chirp_after:
            self._break_link()          # silence long enough even if no timer noticed it
        self._last_heard = now
        self.link_broken = False
        address = getattr(msg, "address", None)
        if address is None or isinstance(msg, framing.Garbled):
            return None
        if address != self.address:
            self.synced = True                 # a poll to someone else (or address 0) syncs us
            self._commit(self.tracker.heard(b"", False)[0])
            if address == 0 and isinstance(msg, LongPollFrame):
                self._broadcast(msg)
            return None
        if not self.synced:
            return None
        self.host_seen = True
        if isinstance(msg, GeneralPoll):
            return self._general_poll()
        if isinstance(msg, Unsupported):
            self._commit(self.tracker.heard(bytes((msg.address, msg.command)), True)[0])
            return None
        return self._long_poll(msg)

    def _commit(self, sent: _Sent | None) -> None:
        if sent is None:
            return
        if sent.item is not None:
            self.egm.exceptions.commit(sent.item)
        if sent.ticket is not None:
            self.egm.mark_ticket_read(sent.ticket)

    def _event_bytes(self, item: PendingException) -> bytes:
        data = item.data if RTE_DATA_LENGTH.get(item.code) else None
        return framing.encode_rte_event(self.address, item.code, data)

    def _general_poll(self) -> bytes | None:
        acked, repeat = self.tracker.heard(self._gp_key, True)
        self._commit(acked)
        if repeat is not None:
            return repeat.data
        item = self.egm.exceptions.peek()
        if item is None:
            self.tracker.sent(None, self._gp_key)
            return None if self.egm.rte else b"\x00"
        data = self._event_bytes(item) if self.egm.rte else bytes((item.plain_code,))
        self.tracker.sent(_Sent(data, item), self._gp_key)
        self.polls_answered += 1
        return data

    def _long_poll(self, frame: LongPollFrame) -> bytes | None:
        try:
            message = frame.decode()
        except CRCError:
            return framing.encode_nack(self.address)
        except SASError:
            return None
        key = frame.ack_key
        acked, repeat = self.tracker.heard(key, True)
        self._commit(acked)
        if repeat is not None and (repeat.commits or self.tracker.nacks <= FINAL_NACK_COUNT):
            return repeat.data
        if self.egm.rte and self.config.rte_events_in_long_polls:
            item = self.egm.exceptions.peek()
            if item is not None:
                data = self._event_bytes(item)
                self.tracker.sent(_Sent(data, item), key)
                return data
        handler = self._handlers.get(frame.command)
        sent = handler(message) if handler else None
        self.tracker.sent(sent, key)
        if sent is None:
            return None
        self.polls_answered += 1
        if frame.command in METER_READS:
            self.meters_read = True
        return sent.data

    def _broadcast(self, frame: LongPollFrame) -> None:
        """Type G: only LP 7F (set clock) is meaningful to an EGM; nothing is ever answered."""
        if frame.command != 0x7F:
            return
        try:
            message = frame.decode()
            self.egm.set_clock(from_sas(message.date, message.time))  # type: ignore[attr-defined]
        except SASError:
            return

    # ---- long-poll handlers --------------------------------------------------------------------------

    def _reply(self, message: lp.Message) -> _Sent:
        return _Sent(framing.encode_response(self.address, message))

    def _ack(self) -> _Sent:
        return _Sent(framing.encode_ack(self.address))

    def _build_handlers(self) -> dict[int, Callable[[lp.Message], _Sent | None]]:
        egm = self.egm

        def ack_after(action: Callable[[], object]) -> Callable[[lp.Message], _Sent]:
            def run(_: lp.Message) -> _Sent:
                action()
                return self._ack()
            return run

        def set_attr(name: str, value: bool) -> Callable[[], None]:
            return lambda: setattr(egm, name, value)

        handlers: dict[int, Callable[[lp.Message], _Sent | None]] = {
            0x01: ack_after(egm.host_disable),
            0x02: ack_after(egm.host_enable),
            0x03: ack_after(set_attr("sound", False)),
            0x04: ack_after(set_attr("sound", True)),
            0x05: ack_after(set_attr("sound", False)),
            0x06: ack_after(set_attr("bill_acceptor_enabled", True)),
            0x07: ack_after(set_attr("bill_acceptor_enabled", False)),
            0x0A: ack_after(set_attr("maintenance", True)),
            0x0B: ack_after(set_attr("maintenance", False)),
            0x08: self._configure_bills,
            0x09: self._enable_game,
            0x0E: self._rte,
            0x0F: lambda _: self._reply(lp.Meters0F(
                egm.meter(m.CANCELLED), egm.meter(m.COIN_IN), egm.meter(m.COIN_OUT), egm.meter(m.DROP),
                egm.meter(m.JACKPOT), egm.meter(m.GAMES_PLAYED))),
            0x18: lambda _: self._reply(lp.GamesSincePowerUp(
                egm.meter(m.GAMES_SINCE_POWER) % 10000, egm.meter(m.GAMES_SINCE_DOOR) % 10000)),
            0x19: lambda _: self._reply(lp.Meters19(
                egm.meter(m.COIN_IN), egm.meter(m.COIN_OUT), egm.meter(m.DROP), egm.meter(m.JACKPOT),
                egm.meter(m.GAMES_PLAYED))),
            0x1B: self._handpay_info,
            0x1C: lambda _: self._reply(lp.Meters1C(
                egm.meter(m.COIN_IN), egm.meter(m.COIN_OUT), egm.meter(m.DROP), egm.meter(m.JACKPOT),
                egm.meter(m.GAMES_PLAYED), egm.meter(m.GAMES_WON), egm.slot_door_opened % 10**8,
                egm.power_resets % 10**8)),
            0x1E: lambda _: self._reply(lp.BillMeters(*(egm.bill_counts[d] % 10**8 for d in (1, 5, 10, 20, 50, 100)))),
            0x1F: lambda _: self._reply(self._machine_config()),
            0x2F: self._selected_meters,
            0x3D: self._ticket_info,
            0x48: self._last_bill,
            0x4D: self._enhanced_validation,
            0x51: lambda _: self._reply(lp.NumberOfGames(len(egm.games))),
            0x53: self._game_configuration,
            0x54: lambda _: self._reply(lp.SasVersion("602", egm.serial[:40])),
            0x55: lambda _: self._reply(lp.SelectedGame(egm.selected_game)),
            0x56: lambda _: self._reply(lp.EnabledGames(tuple(egm.enabled_games()))),
            0x6F: self._extended_meters,
            0xAF: self._extended_meters,
            0x7E: lambda _: self._reply(lp.DateTime(*to_sas(egm.now()))),
            0x7F: self._set_clock,
            0xA0: self._features,
            0xB0: self._multi_denom,
        }
        for cmd, (_, code) in lp.SINGLE_METER_POLLS.items():
            handlers[cmd] = functools.partial(self._single_meter, lp.SINGLE_METER_RESPONSES[cmd], code)
        return handlers

    def _single_meter(self, reply: type[lp.SingleMeter], code: int, _: lp.Message) -> _Sent:
        return self._reply(reply(self.egm.meter(code)))

    def _configure_bills(self, message: lp.Message) -> _Sent:
        self.egm.bill_mask = message.denominations  # type: ignore[attr-defined]
        return self._ack()

    def _enable_game(self, message: lp.Message) -> _Sent | None:
        ok = self.egm.set_game_enabled(message.game, message.enable == 1)  # type: ignore[attr-defined]
        return self._ack() if ok else None

    def _rte(self, message: lp.Message) -> _Sent:
        self.egm.set_rte(message.enable == 1)  # type: ignore[attr-defined]
        return self._ack()

    def _set_clock(self, message: lp.Message) -> _Sent | None:
        try:
            self.egm.set_clock(from_sas(message.date, message.time))  # type: ignore[attr-defined]
        except SASError:
            return None
        return self._ack()

    def _handpay_info(self, _: lp.Message) -> _Sent:
        hp = self.egm.handpay
        if hp is None:
            return self._reply(lp.HandpayInfo(0, 0, 0, 0, 0))
        return self._reply(lp.HandpayInfo(0, hp.level, hp.amount, 0, 0))

    def _machine_config(self) -> lp.MachineInfo:
        egm = self.egm
        return lp.MachineInfo(game_id=_MACHINE_GAME_ID, additional_id="000", denomination=0x01,
                              max_bet=min(255, max(g.max_bet for g in egm.games.values())), progressive_group=0,
                              game_options=0, paytable_id=f"HSM{len(egm.games):03d}",
                              base_percent=f"{egm.meter(m.THEORETICAL_PAYBACK):04d}")

    def _game_configuration(self, message: lp.Message) -> _Sent | None:
        number = message.game  # type: ignore[attr-defined]
        if number == 0:
            machine = self._machine_config()
            return self._reply(lp.GameConfiguration(
                0, machine.game_id, machine.additional_id, machine.denomination, machine.max_bet,
                machine.progressive_group, machine.game_options, machine.paytable_id, machine.base_percent))
        game = self.egm.games.get(number)
        if game is None:
            return None
        return self._reply(lp.GameConfiguration(
            number, game.game_id, "000", game.denomination_code, game.max_bet, 0, 0,
            game.effective_paytable_id, game.base_percent))

    def _features(self, message: lp.Message) -> _Sent | None:
        number = message.game  # type: ignore[attr-defined]
        if number and number not in self.egm.games:
            return None
        return self._reply(lp.EnabledFeatures(number, 0, 0, lp.FEATURES3_MAX_POLLING_40MS, 0))

    def _ticket_info(self, _: lp.Message) -> _Sent:
        last = self.egm.tickets[-1] if self.egm.tickets else None
        if last is None:
            return self._reply(lp.TicketInfo(0, 0))
        return self._reply(lp.TicketInfo(last.validation_number % 10**8, last.amount))

    def _last_bill(self, _: lp.Message) -> _Sent:
        if self.egm.last_bill is None:
            return self._reply(lp.LastBillInfo(0, 0, 0))
        dollars, count = self.egm.last_bill
        return self._reply(lp.LastBillInfo(self.egm.country_code, DENOMINATION_CODE_OF_BILL[dollars],
                                           count % 10**8))

    def _enhanced_validation(self, message: lp.Message) -> _Sent:
        function = message.function  # type: ignore[attr-defined]
        commit = False
        if function in (0x00, 0xFF):
            ticket = self.egm.next_unread_ticket()
            commit = function == 0x00
            index = 0
        else:
            ticket = self.egm.ticket_record(function)
            index = function
        if ticket is None:
            return self._reply(lp.EnhancedValidation(0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        reply = self._reply(lp.EnhancedValidation(
            0x00, index, ticket.date, ticket.time, ticket.validation_number, ticket.amount,
            ticket.number, 0, 0, 0))
        return _Sent(reply.data, ticket=ticket if commit else None)

    # ---- meters by game and by denomination -------------------------------------------------------------

    def _meter_values(self, codes: tuple[int, ...], game: int, denom: int | None) -> tuple[tuple[int, int], ...] | None:
        """(code, value) for the codes this machine keeps; None when ``game`` is not ours.

        ``denom`` (cents) restricts to the games of one denomination (B0) and reports money in
        credits of that denomination."""
        egm = self.egm
        if denom is not None:
            games = egm.games_with_denomination(denom)
            if game:
                if game not in games:
                    return None
                games = [game]
            return tuple((c, self._denom_value(c, games, denom)) for c in codes
                         if c in m.PER_GAME_CODES and c != m.THEORETICAL_PAYBACK)
        if game:
            if game not in egm.games:
                return None
            bank = egm.game_meters[game]
            return tuple((c, bank[c]) for c in codes if c in bank)
        return tuple((c, egm.meters[c]) for c in codes if c in egm.meters)

    def _denom_value(self, code: int, games: list[int], denom: int) -> int:
        total = self.egm.sum_game_meter(code, games)
        return total // denom if code in _MONEY_CODES else total

    def _selected_meters(self, message: lp.Message, denom: int | None = None) -> _Sent | None:
        values = self._meter_values(message.codes, message.game, denom)  # type: ignore[attr-defined]
        if values is None:
            return None
        return self._reply(lp.SelectedMeters(message.game, values))  # type: ignore[attr-defined]

    def _extended_meters(self, message: lp.Message, denom: int | None = None) -> _Sent | None:
        values = self._meter_values(message.codes, message.game, denom)  # type: ignore[attr-defined]
        if values is None:
            return None
        cls = lp.ExtendedMetersAlt if type(message).COMMAND == 0xAF else lp.ExtendedMeters
        return self._reply(cls(message.game, values))  # type: ignore[attr-defined]

    def _multi_denom(self, message: lp.Message) -> _Sent | None:
        """B0: run the wrapped poll for one denomination; silence for what it cannot wrap."""
        code = message.denomination  # type: ignore[attr-defined]
        cents = DENOMINATION_CENTS.get(code)
        if cents is None or not self.egm.games_with_denomination(cents):
            return None
        try:
            inner = framing.unwrap_request(message.message)  # type: ignore[attr-defined]
        except SASError:
            return None
        games = self.egm.games_with_denomination(cents)
        cmd = type(inner).COMMAND
        reply: lp.Message | None
        if cmd in _PER_DENOM_SINGLE:
            reply = lp.SINGLE_METER_RESPONSES[cmd](self._denom_value(_PER_DENOM_SINGLE[cmd], games, cents))
        elif cmd == 0x56:
            reply = lp.EnabledGames(tuple(n for n in self.egm.enabled_games() if n in games))
        elif cmd in (0x2F, 0x6F, 0xAF):
            values = self._meter_values(inner.codes, inner.game, cents)  # type: ignore[attr-defined]
            if values is None:
                return None
            cls = {0x2F: lp.SelectedMeters, 0x6F: lp.ExtendedMeters, 0xAF: lp.ExtendedMetersAlt}[cmd]
            reply = cls(inner.game, values)  # type: ignore[attr-defined]
        else:
            return None
        return self._reply(lp.MultiDenomReply(code, framing.wrap_response(reply)))
