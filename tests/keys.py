"""API keys as the tests' helpers create them: a technician key is always scoped to halls.

Central refuses a technician key without halls (design.md: "devices and diagnostics of its halls").
A helper asked for "a technician" with no scope gets one bound to every hall registered so far, which
is what the role matrix means by "a technician of these halls".
"""

from __future__ import annotations

from collections.abc import Sequence

from central.apikeys import HALL_BOUND_ROLES
from central.repos import Repositories


async def key_scope(store: Repositories, role: str, halls: Sequence[str] | None) -> Sequence[str] | None:
    """``halls`` unchanged, except for a hall-bound role without halls: all registered halls (or a
    placeholder hall when none is registered yet, so the key still exists and reads nothing)."""
    if role not in HALL_BOUND_ROLES or halls:
        return halls
    return tuple(h.id for h in await store.halls.halls()) or ("no-hall-yet",)
