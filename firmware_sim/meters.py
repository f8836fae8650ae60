"""The machine's meters (Table C-7), kept like a real EGM's NVRAM meters.

Every credit meter is in accounting credits of 1 cent, so a meter value is also an amount in minor
units. Meters roll over to 0 past their BCD width (8 digits, 10 for meters kept in cents in 5 BCD
bytes), as real ones do; a simulation never gets near that, but the arithmetic is honest.
"""

from __future__ import annotations

from protocols.sas.bcd import bcd_max
from protocols.sas.fields import meter_size_2f
from protocols.sas.meters import METER_CODES, METER_NAMES

COIN_IN = METER_CODES["coin_in"]
COIN_OUT = METER_CODES["coin_out"]
JACKPOT = METER_CODES["jackpot"]
HANDPAID_CANCELLED = METER_CODES["handpaid_cancelled_credits"]
CANCELLED = METER_CODES["cancelled_credits"]
GAMES_PLAYED = METER_CODES["games_played"]
GAMES_WON = METER_CODES["games_won"]
GAMES_LOST = METER_CODES["games_lost"]
BILLS = METER_CODES["bills_accepted_credits"]
CURRENT_CREDITS = METER_CODES["current_credits"]
TICKET_IN_CENTS = METER_CODES["ticket_in_cents"]
TICKET_OUT_CENTS = METER_CODES["ticket_out_cents"]
TICKET_IN = METER_CODES["ticket_in_credits"]
TICKET_OUT = METER_CODES["ticket_out_credits"]
PAYTABLE_WIN = METER_CODES["machine_paid_paytable_win"]
DROP = METER_CODES["total_drop"]
GAMES_SINCE_POWER = METER_CODES["games_since_power_reset"]
GAMES_SINCE_DOOR = METER_CODES["games_since_door_closure"]
THEORETICAL_PAYBACK = METER_CODES["theoretical_payback_hundredths"]

# Meters a game keeps for itself (LP 2F/6F for game N, B0 per denomination).
PER_GAME_CODES: frozenset[int] = frozenset({COIN_IN, COIN_OUT, JACKPOT, GAMES_PLAYED, GAMES_WON, GAMES_LOST,
                                            PAYTABLE_WIN, THEORETICAL_PAYBACK})


class MeterBank:
    """Meter code → value, with roll-over at each meter's BCD width."""

    __slots__ = ("_values",)

    def __init__(self, codes: frozenset[int] | None = None) -> None:
        self._values: dict[int, int] = dict.fromkeys(METER_NAMES if codes is None else codes, 0)

    def __contains__(self, code: int) -> bool:
        return code in self._values

    def __getitem__(self, code: int) -> int:
        return self._values[code]

    def add(self, code: int, amount: int) -> None:
        if amount < 0:
            raise ValueError("meters only count up")
        self._values[code] = (self._values[code] + amount) % (bcd_max(meter_size_2f(code)) + 1)

    def set(self, code: int, value: int) -> None:
        """For the meters that are levels, not counters (current credits, theoretical payback)."""
        self._values[code] = value

    def get(self, code: int) -> int | None:
        return self._values.get(code)

    def clear(self) -> None:
        for code in self._values:
            self._values[code] = 0

    def by_name(self) -> dict[str, int]:
        return {METER_NAMES[code]: value for code, value in sorted(self._values.items())}
