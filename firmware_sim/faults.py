"""Fault injection on the simulated serial line: knobs a test sets while the EGM runs, and random noise.

Each counter applies to the next N replies (a chirp counts as a reply) and counts down; the rest
are states. The transport consults them on every write, so they take effect at once.

:class:`WireNoise` is the random kind a fault campaign wants (``hall-sim floor --wire-faults``): each
reply, independently, may have one byte flipped, lose its last byte, or not arrive at all, drawn from
a seeded RNG per machine so a run with the same seed draws the same sequence. It lives on the wire,
after the EGM: the machine believes it sent its reply, its meters and exception queue are untouched,
and the host must notice (CRC, length, silence) and ask again, as the SAS implied NACK lets it.
A flipped byte in a one-byte reply (a legacy exception code, an ACK) has no CRC to betray it; that is
what a real SAS wire does too.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

WIRE_FAULT_KINDS: tuple[str, ...] = ("corrupt", "drop", "truncate")


@dataclass
class WireNoise:
    """Random faults per reply; rates are probabilities in [0, 1], checked in the order drop,
    truncate, corrupt (a reply gets at most one of them)."""

    corrupt: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    seed: int = 0
    stream: str = ""     # which machine's stream of draws (see :meth:`for_device`)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WIRE_FAULT_KINDS, 0))
    replies: int = 0     # replies that passed through, faulted or not (the rate's denominator)

    def __post_init__(self) -> None:
        for kind in WIRE_FAULT_KINDS:
            rate = getattr(self, kind)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"wire fault rate {kind}={rate} is outside 0..1")
        if self.corrupt + self.drop + self.truncate > 1.0:
            raise ValueError("wire fault rates add up to more than 1")
        self._rng = random.Random(f"wire:{self.seed}:{self.stream}")

    @property
    def active(self) -> bool:
        return self.corrupt > 0 or self.drop > 0 or self.truncate > 0

    def for_device(self, address: int) -> WireNoise:
        """The same rates with a stream of its own per machine: one line's traffic does not shift
        another's draws, so a machine sees the same faults whatever its neighbours do."""
        return WireNoise(self.corrupt, self.drop, self.truncate, seed=self.seed, stream=str(address))

    def apply(self, data: bytes) -> bytes | None:
        """The reply as the host receives it (None: lost on the wire)."""
        self.replies += 1
        draw = self._rng.random()
        if draw < self.drop:
            self.counts["drop"] += 1
            return None
        draw -= self.drop
        if draw < self.truncate and data:
            self.counts["truncate"] += 1
            return data[:-1]
        draw -= self.truncate
        if draw < self.corrupt and data:
            self.counts["corrupt"] += 1
            at = self._rng.randrange(len(data))
            flipped = data[at] ^ self._rng.randrange(1, 256)
            return data[:at] + bytes((flipped,)) + data[at + 1:]
        return data

    def report(self) -> dict[str, int]:
        return {"replies": self.replies, **self.counts}

    @staticmethod
    def parse(text: str, default_seed: int = 0) -> WireNoise:
        """``corrupt=0.01,drop=0.005[,truncate=0.001][,seed=N]`` (``off`` or empty: no noise); without
        ``seed=`` the draws follow ``default_seed`` (the floor's ``--seed``)."""
        text = text.strip()
        if text in ("", "off", "none"):
            return WireNoise(seed=default_seed)
        values: dict[str, float] = {}
        seed = default_seed
        for part in text.split(","):
            name, sep, value = (piece.strip() for piece in part.partition("="))
            if not sep:
                raise ValueError(f"wire fault {part.strip()!r} is not NAME=VALUE")
            if name not in (*WIRE_FAULT_KINDS, "seed"):
                raise ValueError(f"unknown wire fault {name!r} (corrupt, drop, truncate, seed)")
            try:
                if name == "seed":
                    seed = int(value)
                else:
                    values[name] = float(value)
            except ValueError:
                raise ValueError(f"wire fault {name}: {value!r} is not a number") from None
        return WireNoise(corrupt=values.get("corrupt", 0.0), drop=values.get("drop", 0.0),
                         truncate=values.get("truncate", 0.0), seed=seed)


@dataclass
class Faults:
    corrupt_replies: int = 0      # flip bits in one byte of each of the next N replies
    truncate_replies: int = 0     # the next N replies lose their last byte
    drop_replies: int = 0         # the next N replies are not sent at all
    reply_delay: float = 0.0      # seconds before every reply goes out (> 0.02 is late per [S602])
    dead_until: float = 0.0       # time.monotonic() until which the link carries nothing either way
    power_off_for: float | None = None  # a power cycle request: seconds off (picked up by the server)
    noise: WireNoise | None = None  # random faults on every reply (after the one-shot ones)

    def kill_link(self, seconds: float) -> None:
        """The cable is pulled for ``seconds``: no polls reach the EGM, nothing comes back."""
        self.dead_until = time.monotonic() + seconds

    def link_dead(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.dead_until

    def request_power_cycle(self, off_seconds: float = 0.0) -> None:
        self.power_off_for = off_seconds

    @property
    def mangles(self) -> bool:
        """Whether :meth:`mangle` may change a reply (the transport skips it otherwise)."""
        return bool(self.drop_replies or self.truncate_replies or self.corrupt_replies
                    or (self.noise is not None and self.noise.active))

    def mangle(self, data: bytes) -> bytes | None:
        """A reply after the one-shot faults, then the random noise (None: dropped)."""
        if self.drop_replies > 0:
            self.drop_replies -= 1
            return None
        if self.truncate_replies > 0:
            self.truncate_replies -= 1
            data = data[:-1]
        if self.corrupt_replies > 0 and data:
            self.corrupt_replies -= 1
            data = data[:-1] + bytes((data[-1] ^ 0x5A,))
        if self.noise is not None and self.noise.active:
            return self.noise.apply(data)
        return data
