"""A hall for the monitoring and reconciliation tests: machines whose meters move as they are played,
whose events are written the way the agent writes them (signed, hash-chained, with times we choose),
and which can lose events on purpose — so a test knows the truth independently of central's code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from central.ingest import Ingestor
from protocols.sync import GENESIS_HASH, Event, UnsealedEvent, encode_batch, generate_private_key, seal, topic
from protocols.sync.keys import Ed25519PrivateKey
from protocols.sync.money import ZERO, Contribution

METERS = ("coin_in", "coin_out", "jackpot", "games_played", "bills_accepted_credits", "ticket_in_cents",
          "ticket_out_cents", "handpaid_cancelled_credits", "current_credits")


@dataclass
class Chain:
    """One hall's event chain; ``flush`` ingests what was added since the last flush."""

    hall: str
    key: Ed25519PrivateKey = field(default_factory=generate_private_key)
    events: list[Event] = field(default_factory=list)
    sent: int = 0

    def add(self, device: str, kind: str, data: dict[str, Any], at: int) -> Event:
        seq = len(self.events) + 1
        prev = self.events[-1].hash if self.events else GENESIS_HASH
        event = seal(UnsealedEvent(seq=seq, id=str(uuid.UUID(int=seq, version=4)), hall=self.hall, device=device,
                                   type=kind, device_time=None, agent_time=at, data=data), prev)
        self.events.append(event)
        return event

    async def flush(self, ingestor: Ingestor, size: int = 100) -> None:
        while self.sent < len(self.events):
            last = min(self.sent + size, len(self.events))
            payload = encode_batch(self.events[self.sent:last], self.hall, self.key,
                                   created_at=self.events[0].agent_time)
            outcome = await ingestor.handle(topic(self.hall, "batches"), payload)
            assert outcome.status == "stored", outcome
            self.sent = last


@dataclass
class Egm:
    """A slot machine: absolute meters in cents (denomination 1 cent), and the truth of what happened."""

    chain: Chain
    device: str
    meters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METERS, 0))
    truth: Contribution = ZERO

    def emit(self, kind: str, data: dict[str, Any], at: int) -> Event:
        return self.chain.add(self.device, kind, data, at)

    def play(self, bet: int, win: int, at: int, *, report: bool = True) -> None:
        """One game: coin in, then (if any) coin out; events only when ``report``."""
        self.meters["coin_in"] += bet
        self.meters["games_played"] += 1
        self.meters["coin_out"] += win
        self.truth = self.truth + Contribution(bets=bet, wins=win, rounds=1)
        if report:
            self.emit("game.bet", {"amount": bet, "currency": "EUR", "game": 1,
                                    "coin_in_meter": self.meters["coin_in"], "source": "rte"}, at)
            if win:
                self.emit("game.win", {"amount": win, "currency": "EUR", "game": 1, "paid_by": "machine",
                                        "source": "rte"}, at + 1)
            self.emit("game.ended", {"game": 1, "bet": bet, "win": win, "source": "rte"}, at + 2)

    def jackpot(self, amount: int, at: int) -> None:
        """A hand-paid jackpot: the jackpot meter moves; the agent writes a game.win and a handpay."""
        self.meters["jackpot"] += amount
        self.truth = self.truth + Contribution(wins=amount)
        self.emit("game.win", {"amount": amount, "currency": "EUR", "game": 1, "paid_by": "handpay"}, at)
        self.emit("handpay", {"amount": amount, "currency": "EUR", "kind": "jackpot"}, at + 1)

    def bill(self, amount: int, at: int, *, report: bool = True) -> None:
        self.meters["bills_accepted_credits"] += amount
        self.truth = self.truth + Contribution(cash_in=amount)
        if report:
            self.emit("bill.accepted", {"amount": amount, "currency": "EUR"}, at)

    def ticket_out(self, amount: int, at: int) -> None:
        self.meters["ticket_out_cents"] += amount
        self.truth = self.truth + Contribution(cash_out=amount)
        self.emit("ticket.printed", {"amount": amount, "currency": "EUR", "validation": f"{at % 10**18:018d}"}, at)

    def snapshot(self, at: int, reason: str = "schedule", *, meters: dict[str, int] | None = None,
                 unmetered: dict[str, int] | None = None) -> Event:
        """``meters``: what the read saw if not the machine's meters now (an event arrived during the
        read); ``unmetered``: the money of events written before it that those meters lack."""
        data = {"reason": reason, "source": "6F", "game": 0, "denomination_cents": 1,
                "meters": dict(self.meters if meters is None else meters)}
        if unmetered:
            data["unmetered"] = unmetered
        return self.emit("meters.snapshot", data, at)

    def missed(self, at: int, meters_time: int, **amounts: int) -> Event:
        return self.emit("integration", {"kind": "missed", **amounts, "reason": "buffer_overflow",
                                          "meters_time": meters_time}, at)

    def ram_clear(self, at: int) -> None:
        """Memory lost: every meter back to zero (the agent re-baselines at the next snapshot)."""
        self.emit("service", {"kind": "ram_clear", "code": "3A", "name": "RAM clear"}, at)
        self.meters = dict.fromkeys(METERS, 0)

    def meters_reset_marker(self, at: int) -> Event:
        return self.emit("integration", {"kind": "meters_reset", "detail": "meter 00 went back"}, at)
