"""A fake hall for central's tests: seals realistic events into its chain and signs batches.

It also sums what the shared money rule says each event contributes, so a test can compare central's
rollups with the truth of what was sent, to the minor unit.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from protocols.sync import (
    GENESIS_HASH,
    Event,
    UnsealedEvent,
    encode_batch,
    generate_private_key,
    public_key_to_pem,
    seal,
    topic,
)
from protocols.sync.keys import Ed25519PrivateKey
from protocols.sync.money import ZERO, Contribution, contribution

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
GAMES = ("g-fruits", "g-poker", "g-roulette")


class Clock:
    """A clock standing at ``now`` (microseconds) until a test moves it."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class FakeHall:
    """One hall's agent as far as central can tell: a key, a chain and a stream of game events."""

    hall: str
    seed: int = 0
    devices: int = 3
    key: Ed25519PrivateKey = field(default_factory=generate_private_key)
    events: list[Event] = field(default_factory=list)
    total: Contribution = ZERO
    per_device: dict[str, Contribution] = field(default_factory=dict)
    time: int = T0
    gap_us: tuple[int, int] = (1_000, 400_000_000)
    """Range of the time between two consecutive events of the hall: wide by default, so that batches
    cross UTC days; a benchmark passes a hall's real pace."""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def public_pem(self) -> str:
        return public_key_to_pem(self.key.public_key()).decode()

    @property
    def topic(self) -> str:
        return topic(self.hall, "batches")

    def _append(self, device: str, kind: str, data: dict[str, object]) -> Event:
        seq = len(self.events) + 1
        self.time += self.rng.randint(*self.gap_us)  # by default up to ~7 min apart: batches cross UTC days
        prev = self.events[-1].hash if self.events else GENESIS_HASH
        event = seal(UnsealedEvent(seq=seq, id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                                   hall=self.hall, device=device, type=kind, device_time=self.time - 120,
                                   agent_time=self.time, data=data), prev)
        self.events.append(event)
        c = contribution(kind, event.data)
        self.total = self.total + c
        self.per_device[device] = self.per_device.get(device, ZERO) + c
        return event

    def play(self, count: int) -> list[Event]:
        """About ``count`` events: bills in, rounds of bet/win/ended, tickets out, status now and then."""
        start = len(self.events)
        while len(self.events) - start < count:
            device = f"egm-{self.rng.randint(1, self.devices):03d}"
            roll = self.rng.random()
            if roll < 0.08:
                self._append(device, "bill.accepted", {"amount": self.rng.choice((500, 1000, 2000, 5000)),
                                                       "currency": "EUR", "denomination": 1000})
            elif roll < 0.12:
                self._append(device, "ticket.printed", {"amount": self.rng.randint(1, 20_000), "currency": "EUR",
                                                        "validation": f"{self.rng.getrandbits(60):018d}"})
            elif roll < 0.14:
                self._append(device, "device.status", {"online": True, "device_kind": "egm"})
            else:
                game = self.rng.choice(GAMES)
                bet = self.rng.choice((10, 20, 50, 100, 250))
                win = self.rng.choice((0, 0, 0, bet, bet * 2, bet * 10))
                self._append(device, "game.bet", {"amount": bet, "currency": "EUR", "game": game, "denom": 1})
                if win:
                    self._append(device, "game.win", {"amount": win, "currency": "EUR", "game": game,
                                                      "paid_by": "machine"})
                self._append(device, "game.ended", {"game": game, "bet": bet, "win": win})
        return self.events[start:]

    def batch(self, first: int, last: int, *, key: Ed25519PrivateKey | None = None, created_at: int = T0) -> bytes:
        """A signed batch of seq ``first``..``last`` (inclusive) of this hall's chain."""
        return encode_batch(self.events[first - 1:last], self.hall, key or self.key, created_at=created_at)

    def batches(self, size: int, start: int = 1) -> list[tuple[int, int, bytes]]:
        """All events from ``start`` on as consecutive batches of ``size``: (first, last, payload)."""
        out = []
        for first in range(start, len(self.events) + 1, size):
            last = min(first + size - 1, len(self.events))
            out.append((first, last, self.batch(first, last)))
        return out

    def sum_range(self, first: int, last: int) -> Contribution:
        total = ZERO
        for event in self.events[first - 1:last]:
            total = total + contribution(event.type, event.data)
        return total
