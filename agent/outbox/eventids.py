"""Event IDs as the outbox mints them: random (version 4) UUIDs in lower-case hyphenated form.

Why not ``str(uuid.uuid4())`` per event: that is a ``getrandom`` call, a ``UUID`` object and its
formatting for every event, a tenth of an agent's Python per event (py-spy at 100 halls in
``bench/many_halls.py``). One read of ``os.urandom`` for a whole append and string slicing give the
same IDs: 122 random bits, the version nibble 4 and the RFC 4122 variant (8, 9, a or b).
"""

from __future__ import annotations

import os
from typing import Final

_VARIANT: Final = {f"{n:x}": f"{8 | (n & 3):x}" for n in range(16)}
"""A random hex digit → the variant digit that keeps its two low bits (10xx in binary)."""


def new_event_ids(count: int) -> list[str]:
    """``count`` fresh version-4 UUIDs, e.g. ``'3f2c…-…-4…-a…-…'``."""
    raw = os.urandom(16 * count).hex()
    variant = _VARIANT
    return [f"{raw[i:i + 8]}-{raw[i + 8:i + 12]}-4{raw[i + 13:i + 16]}-{variant[raw[i + 16]]}{raw[i + 17:i + 20]}"
            f"-{raw[i + 20:i + 32]}" for i in range(0, 32 * count, 32)]
