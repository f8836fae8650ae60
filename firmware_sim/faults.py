"""Fault injection on the simulated serial line: knobs a test sets while the EGM runs.

Each counter applies to the next N replies (a chirp counts as a reply) and counts down; the rest
are states. The transport consults them on every write, so they take effect at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Faults:
    corrupt_replies: int = 0      # flip bits in one byte of each of the next N replies
    truncate_replies: int = 0     # the next N replies lose their last byte
    drop_replies: int = 0         # the next N replies are not sent at all
    reply_delay: float = 0.0      # seconds before every reply goes out (> 0.02 is late per [S602])
    dead_until: float = 0.0       # time.monotonic() until which the link carries nothing either way
    power_off_for: float | None = None  # a power cycle request: seconds off (picked up by the server)

    def kill_link(self, seconds: float) -> None:
        """The cable is pulled for ``seconds``: no polls reach the EGM, nothing comes back."""
        self.dead_until = time.monotonic() + seconds

    def link_dead(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.dead_until

    def request_power_cycle(self, off_seconds: float = 0.0) -> None:
        self.power_off_for = off_seconds

    def mangle(self, data: bytes) -> bytes | None:
        """A reply after the one-shot faults (None: dropped)."""
        if self.drop_replies > 0:
            self.drop_replies -= 1
            return None
        if self.truncate_replies > 0:
            self.truncate_replies -= 1
            data = data[:-1]
        if self.corrupt_replies > 0 and data:
            self.corrupt_replies -= 1
            data = data[:-1] + bytes((data[-1] ^ 0x5A,))
        return data
