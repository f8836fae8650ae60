"""The simulated cash/betting terminal: credits, bets settled at a configured RTP, cash and tickets.

No I/O and no Modbus here: the model changes state when a customer, an attendant or the host (a
write to the control register) does something, and :meth:`Terminal.registers` gives the words of
the hallsync terminal map v1 (``protocols.modbus``) that ``modbus_server.py`` serves.

Money is in minor units (cents). The counters are the terminal's own, 32-bit and wrapping like the
map says (a test can preset them near 2**32); the ``truth`` ledger is kept apart from them, from
what customers and attendants really did, so tests can check that a host reading the counters
accounts for every cent:

- ``bets`` = Δ counter bets, ``wins`` = Δ wins, ``rounds`` = Δ rounds,
- ``cash_in`` = Δ cash_in + Δ tickets_in (notes and coins, plus tickets redeemed),
- ``cash_out`` = Δ cash_out + Δ tickets_out (cash paid, plus tickets printed),

each Δ taken modulo 2**32 from the preset start.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from protocols.modbus import HALLSYNC_TERMINAL_V1, STATUS_BITS, encode
from protocols.modbus.registers import CONTROL_DISABLE, CONTROL_ENABLE

from .games import Paytable

COUNTERS: tuple[str, ...] = tuple(f.name for f in HALLSYNC_TERMINAL_V1.counters)
COUNTER_MODULUS = 1 << 32
DEFAULT_FIRMWARE = (1, 4)
DEFAULT_RTP = 0.95
DEFAULT_MIN_BET = 10          # minor units; stakes are multiples of it
DEFAULT_MAX_BET = 2_000
ERROR_CODES: dict[int, str] = {0x0101: "bill acceptor jam", 0x0201: "printer jam", 0x0301: "cash dispenser empty"}


class TerminalRefused(RuntimeError):
    """The terminal cannot do what was asked (disabled, out of service, not enough credit…)."""


@dataclass
class Truth:
    """What really happened, in minor units, kept independently of the counters."""

    bets: int = 0
    wins: int = 0
    rounds: int = 0
    cash_in: int = 0     # notes/coins + tickets redeemed
    cash_out: int = 0    # cash paid + tickets printed

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Bet:
    """A stake placed and not yet settled; the outcome is fixed when it is placed."""

    stake: int
    win: int


class Terminal:
    """One betting/cash terminal. See the module docstring; the methods are its buttons."""

    def __init__(self, number: int = 1, *, seed: int = 0, pace: float = 3.0, rounds: int | None = None,
                 rtp: float = DEFAULT_RTP, min_bet: int = DEFAULT_MIN_BET, max_bet: int = DEFAULT_MAX_BET,
                 firmware: tuple[int, int] = DEFAULT_FIRMWARE, preset: Mapping[str, int] | int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < min_bet <= max_bet:
            raise ValueError(f"bets must satisfy 0 < min_bet ({min_bet}) <= max_bet ({max_bet})")
        if not all(0 <= part <= 255 for part in firmware):
            raise ValueError(f"firmware {firmware} is not two bytes")
        self.number = number
        self.seed = seed
        self.pace = pace
        self.rounds = rounds
        self.rtp = rtp
        self.min_bet = min_bet
        self.max_bet = max_bet
        self.firmware = firmware
        self.clock = clock
        self._paytable = Paytable(rtp)
        self._outcomes = random.Random(f"terminal-outcomes:{seed}:{number}")
        if isinstance(preset, int):
            preset = dict.fromkeys(COUNTERS, preset)
        unknown = set(preset or ()) - set(COUNTERS)
        if unknown:
            raise ValueError(f"unknown counter(s) {', '.join(sorted(unknown))}; counters are {', '.join(COUNTERS)}")
        self.preset: dict[str, int] = {name: (preset or {}).get(name, 0) % COUNTER_MODULUS for name in COUNTERS}
        self.counters: dict[str, int] = dict(self.preset)
        self.truth = Truth()
        self.credits = 0
        self.enabled = True
        self.door_open = False
        self.error_code = 0
        self.paper_low = False
        self.control = 0              # the last value the host wrote to the control register
        self.pending: Bet | None = None
        self._boot = clock()
        self._frozen_heartbeat: int | None = None

    # ---- counters --------------------------------------------------------------------------------------

    def _count(self, name: str, amount: int) -> None:
        if amount < 0:
            raise ValueError("counters only count up")
        self.counters[name] = (self.counters[name] + amount) % COUNTER_MODULUS

    def counted(self, name: str) -> int:
        """How far counter ``name`` moved since the preset (modulo 2**32)."""
        return (self.counters[name] - self.preset[name]) % COUNTER_MODULUS

    # ---- state -----------------------------------------------------------------------------------------

    @property
    def in_service(self) -> bool:
        return not self.door_open and self.error_code == 0

    def accepts_money(self) -> bool:
        return self.enabled and self.in_service

    def can_bet(self) -> bool:
        return self.enabled and self.in_service and self.pending is None and self.credits >= self.min_bet

    @property
    def status(self) -> int:
        flags = {"enabled": self.enabled, "in_service": self.in_service, "door_open": self.door_open,
                 "error": self.error_code != 0, "paper_low": self.paper_low}
        return sum(1 << STATUS_BITS[name] for name, on in flags.items() if on)

    @property
    def heartbeat(self) -> int:
        """+1 every second since power-up, wrapping at 65535; stands still while :meth:`freeze` holds."""
        if self._frozen_heartbeat is not None:
            return self._frozen_heartbeat
        return int(self.clock() - self._boot) & 0xFFFF

    def freeze(self) -> None:
        """Fault: the terminal's firmware hangs; the heartbeat (and nothing else) stops moving."""
        if self._frozen_heartbeat is None:
            self._frozen_heartbeat = self.heartbeat

    def unfreeze(self) -> None:
        """The firmware recovers; the heartbeat goes on from where it stood."""
        if self._frozen_heartbeat is not None:
            self._boot = self.clock() - self._frozen_heartbeat
            self._frozen_heartbeat = None

    def values(self) -> dict[str, int]:
        """Every field of the register map by name (what a host decodes)."""
        return {"status": self.status, "error_code": self.error_code,
                "firmware": self.firmware[0] << 8 | self.firmware[1], "heartbeat": self.heartbeat,
                **self.counters, "control": self.control, "map_version": HALLSYNC_TERMINAL_V1.version}

    def registers(self) -> list[int]:
        """Holding registers 0..19 as served (``encode`` of the map)."""
        return encode(HALLSYNC_TERMINAL_V1, self.values())

    # ---- money in --------------------------------------------------------------------------------------

    def insert_cash(self, amount: int) -> bool:
        """Notes or coins fed; False when refused (disabled, out of service)."""
        return self._money_in("cash_in", amount)

    def redeem_ticket(self, amount: int) -> bool:
        """A ticket (printed anywhere in the hall) redeemed for credit; False when refused."""
        return self._money_in("tickets_in", amount)

    def _money_in(self, counter: str, amount: int) -> bool:
        if amount <= 0:
            raise ValueError("an amount must be positive")
        if not self.accepts_money():
            return False
        self._count(counter, amount)
        self.credits += amount
        self.truth.cash_in += amount
        return True

    # ---- bets ------------------------------------------------------------------------------------------

    def place_bet(self, stake: int, win: int | None = None) -> Bet:
        """Stake ``stake`` minor units; ``win`` forces the payout, otherwise the RTP's paytable draws it."""
        if not self.enabled:
            raise TerminalRefused("the terminal is disabled")
        if not self.in_service:
            raise TerminalRefused("the terminal is out of service")
        if self.pending is not None:
            raise TerminalRefused("a bet is waiting to be settled")
        if not self.min_bet <= stake <= self.max_bet:
            raise TerminalRefused(f"stake {stake} is outside {self.min_bet}..{self.max_bet}")
        if stake > self.credits:
            raise TerminalRefused(f"stake {stake} exceeds the credit of {self.credits}")
        if win is None:
            win = self._paytable.draw(self._outcomes) * stake
        elif win < 0:
            raise ValueError("a win cannot be negative")
        self.credits -= stake
        self._count("bets", stake)
        self.truth.bets += stake
        self.pending = Bet(stake, win)
        return self.pending

    def settle(self) -> Bet:
        """Settle the pending bet (also after a disable: a bet accepted is a bet settled)."""
        bet = self.pending
        if bet is None:
            raise TerminalRefused("no bet to settle")
        self.pending = None
        self._count("rounds", 1)
        self.truth.rounds += 1
        if bet.win:
            self._count("wins", bet.win)
            self.credits += bet.win
            self.truth.wins += bet.win
        return bet

    def bet(self, stake: int, win: int | None = None) -> Bet:
        """A whole bet at once (tests): place, then settle."""
        self.place_bet(stake, win)
        return self.settle()

    # ---- money out -------------------------------------------------------------------------------------

    def cash_out(self, ticket: bool = False) -> int:
        """Pay the whole credit out as cash or as a printed ticket; the amount (0 when nothing was paid).

        Allowed while disabled (the customer's money is theirs), not during a bet or an error.
        """
        amount = self.credits
        if amount <= 0 or self.pending is not None or self.error_code:
            return 0
        self._count("tickets_out" if ticket else "cash_out", amount)
        self.credits = 0
        self.truth.cash_out += amount
        return amount

    # ---- attendant and faults --------------------------------------------------------------------------

    def open_door(self) -> None:
        self.door_open = True

    def close_door(self) -> None:
        """The attendant closes the door (and has refilled the printer's paper)."""
        self.door_open = False
        self.paper_low = False

    def set_error(self, code: int) -> None:
        if not 0 < code <= 0xFFFF:
            raise ValueError(f"error code {code} is outside 1..65535")
        self.error_code = code

    def clear_error(self) -> None:
        self.error_code = 0

    # ---- host ------------------------------------------------------------------------------------------

    def write_control(self, value: int) -> None:
        """The host wrote ``value`` to register 18: 1 disables (no new bets), 2 enables."""
        if value == CONTROL_DISABLE:
            self.enabled = False
        elif value == CONTROL_ENABLE:
            self.enabled = True
        else:
            raise ValueError(f"control value {value} is neither {CONTROL_DISABLE} nor {CONTROL_ENABLE}")
        self.control = value

    # ---- views -----------------------------------------------------------------------------------------

    def meters(self) -> dict[str, int]:
        return dict(self.counters)

    def snapshot(self) -> dict[str, object]:
        """The device's truth for ``truth.json``: what customers did, plus the counters."""
        return {"kind": "terminal", **self.truth.as_dict(), "meters": self.meters()}


__all__ = ["COUNTERS", "COUNTER_MODULUS", "ERROR_CODES", "Bet", "Terminal", "TerminalRefused", "Truth"]
