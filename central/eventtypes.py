"""Event types the store and the pure rules (rollups, the floor, the monitor) share, in a module that
imports nothing of central, so that neither side imports the other for them."""

from __future__ import annotations

from typing import Final

from protocols.sync.vocabulary import PLAY_TYPES as PLAY_TYPES  # re-exported: the one definition of play

CONDITION_TYPES: Final = ("device.door", "game.error", "device.status", "handpay", "service", "integration")
"""Event types that can change a machine's state other than play (what the store reads per device)."""
