"""A log-flood throttle: at most ``burst`` lines per key per window; the rest are counted, not written.

Sans-IO (the caller passes the time), so central's integration log and the agent's refused-message
lines share one rule: someone publishing garbage many times a second costs a bounded number of log
lines per key and minute, and the next admitted line says how many similar ones were dropped.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Final

MAX_KEYS: Final = 100_000
"""Keys tracked at once; past this the state is forgotten (a fresh budget for all, never a crash)."""


@dataclass(slots=True)
class WindowThrottle:
    """Fixed windows of ``window`` µs per key, ``burst`` admitted lines in each."""

    burst: int = 20
    window: int = 60_000_000
    suppressed_total: int = 0
    _state: dict[Hashable, list[int]] = field(default_factory=dict)
    """key → [window start, admitted in it, suppressed since the last admitted line]."""

    def admit(self, key: Hashable, now: int) -> tuple[bool, int]:
        """(write it?, how many lines of this key were suppressed before it since the last one written)."""
        state = self._state.get(key)
        if state is None or now - state[0] >= self.window:
            if state is None and len(self._state) >= MAX_KEYS:
                self._state.clear()
            suppressed = 0 if state is None else state[2]
            self._state[key] = [now, 1, 0]
            return True, suppressed
        if state[1] < self.burst:
            state[1] += 1
            suppressed, state[2] = state[2], 0
            return True, suppressed
        state[2] += 1
        self.suppressed_total += 1
        return False, 0
