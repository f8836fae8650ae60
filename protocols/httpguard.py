"""Sans-IO bookkeeping for guarding an HTTP listener: per-client connection caps and failure windows.

Why here: both central's API and the agent's ``/metrics`` listener need the same limits (issue 16:
slow or many connections from one client held sockets for minutes; guessed API keys were free), and
the agent and central never import each other. The I/O half — timers on a live connection, refusing
a socket — is :mod:`mqttlink.httpguard`; these classes only count, and take "now" as an argument so
a test can drive them without a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

DEFAULT_HEADER_TIMEOUT: Final = 10.0
"""Seconds a connection may take from its first byte (or from opening) to a complete request line and
headers. A real client sends them in one packet; 10 s covers a very bad mobile link."""
DEFAULT_BODY_TIMEOUT: Final = 30.0
"""Seconds from complete headers to the last byte of the body (our bodies are a few KiB of JSON)."""
DEFAULT_MAX_PER_IP: Final = 64
"""Concurrent connections one client address may hold (a browser opens 6; a NAT of a few dozen)."""
DEFAULT_LOGIN_FAILURES: Final = 20
DEFAULT_LOGIN_WINDOW: Final = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What a guarded listener enforces; 0 for a timeout or the cap means "not enforced"."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_per_ip: int = DEFAULT_MAX_PER_IP


DEFAULT_LIMITS: Final = Limits()


class ConnectionCap:
    """Open connections per key (a client address); ``acquire`` refuses the one past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        """Count a new connection of ``key``; False (and not counted) when it already holds ``limit``."""
        held = self._open.get(key, 0)
        if self.limit > 0 and held >= self.limit:
            return False
        self._open[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._open.get(key, 0) - 1
        if held > 0:
            self._open[key] = held
        else:
            self._open.pop(key, None)

    def held(self, key: str) -> int:
        return self._open.get(key, 0)


Verdict = Literal["first", "counted", "locked"]


@dataclass(slots=True)
class _Window:
    start: float
    failures: int = 0
    refused: int = 0


class FailureWindow:
    """Failures per key in fixed windows: after ``limit`` failures within ``window`` seconds of the
    first one the key is refused until that window ends.

    Fixed, not sliding, and refusals do not extend it: the lockout ends at a time the client can be
    told (``Retry-After``), and a refused attempt was never checked, so it is not a failure. Memory is
    bounded: at most ``max_keys`` keys are remembered, the oldest windows dropped first (a flood of
    addresses can shorten someone's lockout, never lengthen it).
    """

    def __init__(self, limit: int = DEFAULT_LOGIN_FAILURES, window: float = DEFAULT_LOGIN_WINDOW,
                 max_keys: int = 10_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._windows: dict[str, _Window] = {}

    def retry_after(self, key: str, now: float) -> int | None:
        """Whole seconds until ``key`` may try again (at least 1), or None when it may try now.
        Counts the refusal (see :meth:`refused`)."""
        state = self._windows.get(key)
        if state is None or self.limit <= 0 or state.failures < self.limit:
            return None
        left = state.start + self.window - now
        if left <= 0:
            return None
        state.refused += 1
        return max(1, math.ceil(left))

    def failure(self, key: str, now: float) -> Verdict:
        """Count a failure: ``first`` of a new window, ``locked`` for the one that starts the lockout,
        ``counted`` otherwise (what the caller logs: one line for each of the first two)."""
        state = self._windows.get(key)
        if state is None or now >= state.start + self.window:
            self._windows.pop(key, None)
            self._prune(now)
            state = self._windows[key] = _Window(start=now)
        state.failures += 1
        if state.failures == self.limit:
            return "locked"
        return "first" if state.failures == 1 else "counted"

    def refused(self, key: str) -> int:
        """Attempts refused in ``key``'s current window."""
        state = self._windows.get(key)
        return state.refused if state is not None else 0

    def _prune(self, now: float) -> None:
        if len(self._windows) < self.max_keys:
            return
        for key in [k for k, w in self._windows.items() if now >= w.start + self.window]:
            del self._windows[key]
        while len(self._windows) >= self.max_keys:  # insertion order is window start order
            del self._windows[next(iter(self._windows))]
