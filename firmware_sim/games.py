"""Game configurations and their paytables: what a simulated game pays, and how often.

A game's outcome is a multiplier of the bet drawn from a small tier table whose probabilities are
scaled so that the expected return equals the configured RTP exactly (up to float rounding of the
probabilities; every amount paid is an integer number of game credits).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from protocols.sas.denominations import CODE_OF_CENTS

# (multiplier of the bet, relative probability) before scaling to the RTP. The top tier is the one
# that, at higher bets, crosses the handpay limit and becomes a hand-paid jackpot.
_TIER_SHAPE: tuple[tuple[int, float], ...] = (
    (1, 0.15), (2, 0.08), (5, 0.04), (10, 0.015), (50, 0.002), (250, 0.0003), (2000, 0.00005),
)


@dataclass(frozen=True, slots=True)
class GameConfig:
    """One game of a multi-game machine.

    ``denomination`` is in cents (1 game credit = that many cents); ``max_bet`` is in game credits;
    ``rtp`` is the theoretical payback as a fraction (0.96 = 96 %). The RTE 7E record carries the
    wager in 4 BCD digits of accounting credits (cents), so ``max_bet * denomination`` ≤ 9999.
    """

    number: int
    denomination: int = 1
    max_bet: int = 100
    rtp: float = 0.96
    paytable_id: str = ""
    game_id: str = "HS"

    def __post_init__(self) -> None:
        if not 1 <= self.number <= 9999:
            raise ValueError(f"game number {self.number} is outside 1..9999")
        if self.denomination not in CODE_OF_CENTS:
            raise ValueError(f"SAS has no denomination code for {self.denomination} cents")
        if not 1 <= self.max_bet <= 255 or self.max_bet * self.denomination > 9999:
            raise ValueError(f"max bet {self.max_bet} × {self.denomination}¢ does not fit SAS fields")
        if not 0.5 <= self.rtp < 1.0:
            raise ValueError(f"RTP {self.rtp} is outside 0.5..1.0")
        if len(self.effective_paytable_id) > 6 or len(self.game_id) > 2:
            raise ValueError("paytable ID is at most 6 characters, game ID at most 2")

    @property
    def denomination_code(self) -> int:
        return CODE_OF_CENTS[self.denomination]

    @property
    def effective_paytable_id(self) -> str:
        return self.paytable_id or f"P{self.number:03d}{round(self.rtp * 100) % 100:02d}"

    @property
    def base_percent(self) -> str:
        """LP 1F/53 ``base_percent``: 4 ASCII digits, implied decimal point (``"9600"``)."""
        return f"{round(self.rtp * 10000):04d}"

    @property
    def rtp_hundredths(self) -> int:
        return round(self.rtp * 10000)


DEFAULT_GAMES: tuple[GameConfig, ...] = (
    GameConfig(1, denomination=1, max_bet=100, rtp=0.96),
    GameConfig(2, denomination=5, max_bet=20, rtp=0.945),
    GameConfig(3, denomination=10, max_bet=10, rtp=0.92),
)


class Paytable:
    """Draws outcomes (a multiplier of the bet) whose expectation is the game's RTP."""

    def __init__(self, rtp: float) -> None:
        expected = sum(mult * p for mult, p in _TIER_SHAPE)
        scale = rtp / expected
        self.tiers = tuple((mult, p * scale) for mult, p in _TIER_SHAPE)
        total = sum(p for _, p in self.tiers)
        if total >= 1.0:
            raise ValueError(f"RTP {rtp} needs win probabilities above 1")
        cumulative, acc = [], 0.0
        for mult, p in self.tiers:
            acc += p
            cumulative.append((acc, mult))
        self._cumulative = tuple(cumulative)

    def draw(self, rng: random.Random) -> int:
        """A multiplier of the bet (0 = a loss)."""
        x = rng.random()
        for bound, mult in self._cumulative:
            if x < bound:
                return mult
        return 0

    def expected_return(self) -> float:
        return sum(mult * p for mult, p in self.tiers)


def parse_games(spec: str) -> list[GameConfig]:
    """``"1:1:100:96,2:5:20:94.5"`` → games (number:denomination cents:max bet:RTP percent)."""
    games = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        fields = item.split(":")
        if len(fields) != 4:
            raise ValueError(f"game {item!r} is not number:denomination:max_bet:rtp_percent")
        number, denom, max_bet = (int(x) for x in fields[:3])
        games.append(GameConfig(number, denomination=denom, max_bet=max_bet, rtp=float(fields[3]) / 100))
    if not games:
        raise ValueError("no games given")
    if len({g.number for g in games}) != len(games):
        raise ValueError("game numbers must be unique")
    return games
