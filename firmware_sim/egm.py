"""The simulated EGM itself: games, credits, meters, doors, handpays, tickets, power and its NVRAM.

No I/O and no SAS bytes here: the model changes state when a player, an attendant or the host (via
``responder.py``) does something, and queues the exceptions a real machine would report. Tests
drive it directly; ``players.py`` drives it autonomously; ``pty_egm.py`` puts it on a serial line.

Money: the accounting denomination is 1 cent, so every credit meter is in cents. Games have their
own denominations; bets and wins in game credits are converted exactly (credits × cents).
The ``truth`` ledger is kept apart from the meters, from what players and attendants did, so that
tests can check that the meters (and a host reading them) account for every cent.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from protocols.sas import clock as sas_clock
from protocols.sas.exceptions import (
    BILL_CODES,
    DENOMINATION_CODE_OF_BILL,
    DOOR_CODES,
    BillAcceptedData,
    GameEndedData,
    GameSelectedData,
    GameStartedData,
)

from . import meters as m
from .fifo import MIN_FIFO_SIZE, ExceptionQueue
from .games import DEFAULT_GAMES, GameConfig, Paytable

BILL_DOLLARS: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100)
_LEGACY_BILL_CODE = {dollars: code for code, dollars in BILL_CODES.items()}
_DOOR_CODE = {key: code for code, key in DOOR_CODES.items()}
DOORS: tuple[str, ...] = tuple(dict.fromkeys(name for name, _ in DOOR_CODES.values()))

HANDPAY_LEVEL_JACKPOT = 0x00
HANDPAY_LEVEL_CANCELLED_CREDITS = 0x80
DEFAULT_HANDPAY_LIMIT = 120_000        # $1,200: a single win at or above it is paid by hand
DEFAULT_TICKET_LIMIT = 1_000_000       # $10,000: a cash-out above it is a handpay of cancelled credits


class PlayRefused(RuntimeError):
    """The machine cannot do what was asked (disabled, locked by a handpay, not enough credits…)."""


@dataclass
class Truth:
    """What really happened, in cents, kept independently of the meters."""

    bets: int = 0
    wins: int = 0        # machine-paid + hand-paid jackpots
    rounds: int = 0
    cash_in: int = 0     # bills
    cash_out: int = 0    # tickets + hand-paid cancelled credits

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Handpay:
    """A pending handpay, as LP 1B reports it (amount in cents)."""

    amount: int
    level: int
    game: int | None

    @property
    def is_jackpot(self) -> bool:
        return self.level != HANDPAY_LEVEL_CANCELLED_CREDITS


@dataclass(frozen=True, slots=True)
class Ticket:
    """A printed cash-out ticket (LP 3D, LP 4D)."""

    validation_number: int   # 16 digits; LP 3D carries the low 8
    amount: int              # cents
    number: int              # ticket sequence number, 0..9999
    date: int                # SAS MMDDYYYY
    time: int                # SAS HHMMSS


@dataclass(frozen=True, slots=True)
class GameRound:
    """A game from wager to outcome (the outcome is fixed when the game starts)."""

    game: int
    bet_credits: int
    bet_cents: int
    win_credits: int
    win_cents: int


class Egm:
    """One gaming machine. See the module docstring; the methods are the machine's buttons."""

    def __init__(self, address: int, games: list[GameConfig] | None = None, seed: int = 0, pace: float = 3.0,
                 rounds: int | None = None, serial: str = "", *, handpay_limit: int = DEFAULT_HANDPAY_LIMIT,
                 ticket_limit: int = DEFAULT_TICKET_LIMIT, fifo_size: int = MIN_FIFO_SIZE,
                 clock: Callable[[], float] = time.time, country_code: int = 0) -> None:
        if not 1 <= address <= 127:
            raise ValueError(f"SAS address {address} is outside 1..127")
        game_list = list(games) if games else list(DEFAULT_GAMES)
        if len({g.number for g in game_list}) != len(game_list):
            raise ValueError("game numbers must be unique")
        self.address = address
        self.games: dict[int, GameConfig] = {g.number: g for g in game_list}
        self.seed = seed
        self.pace = pace
        self.rounds = rounds
        self.serial = serial or f"HS{seed % 10000:04d}{address:03d}"
        self.handpay_limit = handpay_limit
        self.ticket_limit = ticket_limit
        self.country_code = country_code
        self.clock = clock
        self._paytables = {g.number: Paytable(g.rtp) for g in game_list}
        self._outcomes = random.Random(f"outcomes:{seed}:{address}")
        self._validation = random.Random(f"tickets:{seed}:{address}")
        self.exceptions = ExceptionQueue(fifo_size)
        self.truth = Truth()
        self.meters = m.MeterBank()
        self.game_meters: dict[int, m.MeterBank] = {n: m.MeterBank(m.PER_GAME_CODES) for n in self.games}
        self._clock_offset = 0.0
        self.boot_count = 0
        self._reset_volatile_memory()

    # ---- NVRAM contents ------------------------------------------------------------------------------

    def _reset_volatile_memory(self) -> None:
        """Everything a RAM clear wipes (and the initial state)."""
        self.meters.clear()
        for bank in self.game_meters.values():
            bank.clear()
        for number, game in self.games.items():
            self.game_meters[number].set(m.THEORETICAL_PAYBACK, game.rtp_hundredths)
        self._update_payback()
        self.exceptions.clear()
        self.bill_counts: dict[int, int] = dict.fromkeys(BILL_DOLLARS, 0)
        self.last_bill: tuple[int, int] | None = None       # (dollars, lifetime count of that bill)
        self.tickets: deque[Ticket] = deque(maxlen=31)
        self._unread_tickets: deque[Ticket] = deque(maxlen=31)
        self.ticket_counter = 0
        self.slot_door_opened = 0
        self.power_resets = 0
        self.doors: dict[str, bool] = dict.fromkeys(DOORS, False)
        self.enabled = True               # LP 01/02 (host)
        self.disable_pending = False      # LP 01 during a game: takes effect when it ends
        self.bill_acceptor_enabled = True
        self.bill_mask = 0xFFFFFFFF       # LP 08
        self.maintenance = False
        self.sound = True
        self.game_enabled: dict[int, bool] = dict.fromkeys(self.games, True)
        self.selected_game = min(self.games)
        self.rte = False
        self.powered = True
        self.handpay: Handpay | None = None
        self.current_round: GameRound | None = None

    @property
    def credits(self) -> int:
        """Current credits, in cents (meter 0C)."""
        return self.meters[m.CURRENT_CREDITS]

    def _credit(self, delta: int) -> None:
        self.meters.set(m.CURRENT_CREDITS, self.meters[m.CURRENT_CREDITS] + delta)

    def meter(self, code: int, game: int | None = None) -> int:
        """A Table C-7 meter of the machine (``game`` None or 0) or of game N."""
        if game:
            return self.game_meters[game][code]
        return self.meters[code]

    def meters_by_name(self) -> dict[str, int]:
        return self.meters.by_name()

    def pending_exceptions(self) -> list[int]:
        """Queued exception codes in the order the host will get them (RTE codes: 4F for bills)."""
        return self.exceptions.pending()

    def _update_payback(self) -> None:
        """Meter 7F: the RTPs weighted by each game's coin in (plain average before any play)."""
        weights = {n: bank[m.COIN_IN] for n, bank in self.game_meters.items()}
        total = sum(weights.values())
        if total:
            value = sum(self.games[n].rtp_hundredths * w for n, w in weights.items()) // total
        else:
            value = sum(g.rtp_hundredths for g in self.games.values()) // len(self.games)
        self.meters.set(m.THEORETICAL_PAYBACK, value)

    # ---- what blocks play -----------------------------------------------------------------------------

    @property
    def locked_by_handpay(self) -> bool:
        return self.handpay is not None

    def can_start_game(self) -> bool:
        return (self.powered and self.enabled and not self.disable_pending and not self.maintenance
                and self.handpay is None and self.current_round is None and not self.doors["slot"]
                and self.game_enabled.get(self.selected_game, False))

    def _require_power(self) -> None:
        if not self.powered:
            raise PlayRefused("the machine is powered off")

    # ---- bills ---------------------------------------------------------------------------------------

    def accepts_bill(self, dollars: int) -> bool:
        code = DENOMINATION_CODE_OF_BILL.get(dollars)
        return (self.powered and self.enabled and self.bill_acceptor_enabled and not self.maintenance
                and self.handpay is None and dollars in self.bill_counts and code is not None
                and bool(self.bill_mask >> code & 1))

    def insert_bill(self, dollars: int) -> bool:
        """A player feeds a bill; False when the acceptor refuses it (disabled, locked, unknown bill)."""
        if not self.accepts_bill(dollars):
            return False
        cents = dollars * 100
        self.meters.add(m.BILLS, cents)
        self.meters.add(m.DROP, cents)
        self._credit(cents)
        self.bill_counts[dollars] += 1
        self.last_bill = (dollars, self.bill_counts[dollars])
        self.truth.cash_in += cents
        data = BillAcceptedData(self.country_code, DENOMINATION_CODE_OF_BILL[dollars], self.bill_counts[dollars])
        self.exceptions.push(0x4F, data, _LEGACY_BILL_CODE.get(dollars, 0x4F))
        return True

    # ---- games ---------------------------------------------------------------------------------------

    def enabled_games(self) -> list[int]:
        return [n for n, on in self.game_enabled.items() if on]

    def select_game(self, number: int) -> None:
        self._require_power()
        if number not in self.games:
            raise PlayRefused(f"no game {number}")
        if not self.game_enabled[number]:
            raise PlayRefused(f"game {number} is disabled")
        if self.current_round is not None:
            raise PlayRefused("a game is in progress")
        if number != self.selected_game:
            self.selected_game = number
            self.exceptions.push(0x8C, GameSelectedData(number))

    def start_game(self, bet: int, game: int | None = None, win: int | None = None) -> GameRound:
        """Wager ``bet`` game credits on ``game`` (default: the selected one).

        ``win`` (game credits) forces the outcome; otherwise the paytable draws it now, so the
        outcome is fixed at the wager like on a real machine (power loss cannot change it).
        """
        if game is not None and game != self.selected_game:
            self.select_game(game)
        if not self.can_start_game():
            raise PlayRefused("the machine cannot start a game now")
        config = self.games[self.selected_game]
        if not 1 <= bet <= config.max_bet:
            raise PlayRefused(f"bet {bet} is outside 1..{config.max_bet}")
        bet_cents = bet * config.denomination
        if bet_cents > self.credits:
            raise PlayRefused(f"bet of {bet_cents}¢ exceeds {self.credits}¢ of credits")
        if win is None:
            win = self._paytables[config.number].draw(self._outcomes) * bet
        elif win < 0:
            raise ValueError("a win cannot be negative")
        self._credit(-bet_cents)
        self.meters.add(m.COIN_IN, bet_cents)
        self.game_meters[config.number].add(m.COIN_IN, bet_cents)
        self.truth.bets += bet_cents
        rnd = GameRound(config.number, bet, bet_cents, win, win * config.denomination)
        self.current_round = rnd
        self.exceptions.push(0x7E, GameStartedData(bet_cents, self.meters[m.COIN_IN], 0, 0))
        return rnd

    def end_game(self) -> GameRound:
        """Resolve the game in progress: meters, credits, and a handpay for a win at the limit."""
        rnd = self.current_round
        if rnd is None:
            raise PlayRefused("no game in progress")
        bank = self.game_meters[rnd.game]
        for code in (m.GAMES_PLAYED, m.GAMES_SINCE_POWER, m.GAMES_SINCE_DOOR):
            self.meters.add(code, 1)
        bank.add(m.GAMES_PLAYED, 1)
        self.truth.rounds += 1
        outcome = m.GAMES_WON if rnd.win_cents else m.GAMES_LOST
        self.meters.add(outcome, 1)
        bank.add(outcome, 1)
        if rnd.win_cents >= self.handpay_limit:
            self.handpay = Handpay(rnd.win_cents, HANDPAY_LEVEL_JACKPOT, rnd.game)
            self.exceptions.push(0x51)
        elif rnd.win_cents:
            for code in (m.COIN_OUT, m.PAYTABLE_WIN):
                self.meters.add(code, rnd.win_cents)
                bank.add(code, rnd.win_cents)
            self._credit(rnd.win_cents)
            self.truth.wins += rnd.win_cents
        self.exceptions.push(0x7F, GameEndedData(rnd.win_cents))
        self.current_round = None
        self._update_payback()
        self._apply_pending_disable()
        return rnd

    def play_game(self, bet: int, game: int | None = None, win: int | None = None) -> GameRound:
        """A whole game at once (tests): start, then end."""
        self.start_game(bet, game, win)
        return self.end_game()

    # ---- cash out and handpays --------------------------------------------------------------------------

    def cash_out(self) -> int:
        """The player presses cash-out: a ticket, or a handpay above the ticket limit. Returns cents."""
        self._require_power()
        amount = self.credits
        if amount <= 0 or self.handpay is not None or self.current_round is not None:
            return 0
        if amount > self.ticket_limit:
            self.handpay = Handpay(amount, HANDPAY_LEVEL_CANCELLED_CREDITS, None)
            self.exceptions.push(0x51)
            return amount
        for code in (m.TICKET_OUT_CENTS, m.TICKET_OUT, m.CANCELLED):
            self.meters.add(code, amount)
        self._credit(-amount)
        self.truth.cash_out += amount
        self.ticket_counter = (self.ticket_counter + 1) % 10000
        date, tod = sas_clock.to_sas(self.now())
        ticket = Ticket(self._validation.randrange(10**15, 10**16), amount, self.ticket_counter, date, tod)
        self.tickets.append(ticket)
        self._unread_tickets.append(ticket)
        self.exceptions.push(0x3D)
        return amount

    def reset_handpay(self) -> Handpay | None:
        """The attendant pays the pending handpay and keys it off (exception 52)."""
        paid = self.handpay
        if paid is None:
            return None
        if paid.is_jackpot:
            self.meters.add(m.JACKPOT, paid.amount)
            if paid.game is not None:
                self.game_meters[paid.game].add(m.JACKPOT, paid.amount)
            self.truth.wins += paid.amount
        else:
            self.meters.add(m.HANDPAID_CANCELLED, paid.amount)
            self.meters.add(m.CANCELLED, paid.amount)
            self._credit(-paid.amount)
            self.truth.cash_out += paid.amount
        self.handpay = None
        self.exceptions.push(0x52)
        self._apply_pending_disable()
        return paid

    def next_unread_ticket(self) -> Ticket | None:
        """LP 4D function 00/FF: the oldest record the host has not read (it stays until ACKed)."""
        return self._unread_tickets[0] if self._unread_tickets else None

    def ticket_record(self, index: int) -> Ticket | None:
        """LP 4D function 01–1F: record ``index`` counting back from the newest (1 = newest)."""
        return self.tickets[-index] if 1 <= index <= len(self.tickets) else None

    def mark_ticket_read(self, ticket: Ticket) -> None:
        if self._unread_tickets and self._unread_tickets[0] is ticket:
            self._unread_tickets.popleft()

    # ---- doors, power, RAM clear ------------------------------------------------------------------------

    def open_door(self, door: str = "slot") -> None:
        self._door(door, True)

    def close_door(self, door: str = "slot") -> None:
        self._door(door, False)

    def _door(self, door: str, opened: bool) -> None:
        if door not in self.doors:
            raise ValueError(f"unknown door {door!r}; doors are {', '.join(DOORS)}")
        if self.doors[door] == opened:
            return
        self.doors[door] = opened
        if door == "slot":
            if opened:
                self.slot_door_opened += 1
            else:
                self.meters.set(m.GAMES_SINCE_DOOR, 0)
        self.exceptions.push(_DOOR_CODE[(door, opened)])

    def power_off(self) -> None:
        """Power lost: a game in progress is resolved from NVRAM; 18 waits in the queue."""
        if not self.powered:
            return
        if self.current_round is not None:
            self.end_game()
        self.exceptions.push(0x18)
        self.powered = False

    def power_on(self) -> None:
        """Power back: 17 queued, RTE off (a host must enable it again), the link must re-sync."""
        if self.powered:
            return
        self.powered = True
        self.rte = False
        self.power_resets += 1
        self.meters.set(m.GAMES_SINCE_POWER, 0)
        self.boot_count += 1
        self.exceptions.push(0x17)

    def power_cycle(self) -> None:
        self.power_off()
        self.power_on()

    def ram_clear(self) -> None:
        """Memory reset through the self-test switch: meters, queue and options wiped, then 3A."""
        self._reset_volatile_memory()
        self.boot_count += 1
        self.exceptions.push(0x3A)

    # ---- host commands (LP handlers call these) ----------------------------------------------------------

    def host_disable(self) -> None:
        """LP 01: lock out play; a game in progress ends first ([S602] §7.4.1)."""
        if self.current_round is not None:
            self.disable_pending = True
        else:
            self.enabled = False

    def host_enable(self) -> None:
        self.enabled = True
        self.disable_pending = False

    def _apply_pending_disable(self) -> None:
        if self.disable_pending and self.current_round is None:
            self.disable_pending = False
            self.enabled = False

    def set_game_enabled(self, number: int, enabled: bool) -> bool:
        """LP 09; game 0 means the whole machine. False for a game this machine does not have."""
        if number == 0:
            self.host_enable() if enabled else self.host_disable()
            return True
        if number not in self.games:
            return False
        self.game_enabled[number] = enabled
        return True

    def set_rte(self, enabled: bool) -> None:
        self.rte = enabled

    def now(self) -> dt.datetime:
        """The machine's own clock (naive; UTC until a host sets it)."""
        stamp = self.clock() + self._clock_offset
        return dt.datetime.fromtimestamp(stamp, dt.UTC).replace(tzinfo=None)

    def set_clock(self, moment: dt.datetime) -> None:
        self._clock_offset = moment.replace(tzinfo=dt.UTC).timestamp() - self.clock()

    # ---- views -----------------------------------------------------------------------------------------

    def games_with_denomination(self, cents: int) -> list[int]:
        return [n for n, g in self.games.items() if g.denomination == cents]

    def sum_game_meter(self, code: int, games: Iterable[int]) -> int:
        return sum(self.game_meters[n][code] for n in games)

    def snapshot(self) -> dict[str, object]:
        """The device's truth for ``truth.json``: what players did, plus the meters."""
        return {"kind": "egm", **self.truth.as_dict(), "meters": self.meters_by_name()}


__all__ = ["Egm", "GameConfig", "GameRound", "Handpay", "PlayRefused", "Ticket", "Truth"]
