"""Central's clock: integer microseconds since the epoch (UTC), the protocol's only time unit."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]
"""Anything returning "now" in microseconds; injected so tests control time."""


def now_micros() -> int:
    """Wall-clock now in integer microseconds (UTC)."""
    return time.time_ns() // 1000
