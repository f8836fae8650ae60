"""The exception queue an EGM keeps in NVRAM ([S602] §2.2.1, notes §3.5).

Ordinary exceptions wait in a FIFO of at least 20 entries; when it is full the oldest entry is
dropped and exception 70 (buffer overflow) is raised. Priority exceptions are not queued: each is
a latched flag, and the highest one pending is always sent before anything in the FIFO. An entry
leaves only when the host has implicitly ACKed the reply that carried it (see ``responder.py``),
so a lost reply costs nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import count

from protocols.sas.exceptions import PRIORITY_EXCEPTIONS, RteData

OVERFLOW = 0x70
MIN_FIFO_SIZE = 20
_PRIORITY_RANK = {code: rank for rank, code in enumerate(PRIORITY_EXCEPTIONS)}
_ids = count(1)


@dataclass(frozen=True, slots=True)
class PendingException:
    """One exception as it will be reported.

    ``code`` is what RTE mode reports (with ``data``); ``legacy_code`` what a general poll outside
    RTE mode reports (they differ for bills: 4F with data vs. 47–4E). ``uid`` tells two identical
    codes apart so that committing one never removes another.
    """

    code: int
    data: RteData | None = None
    legacy_code: int | None = None
    uid: int = field(default_factory=lambda: next(_ids))

    @property
    def plain_code(self) -> int:
        return self.code if self.legacy_code is None else self.legacy_code


class ExceptionQueue:
    """FIFO plus latched priority exceptions; :meth:`peek` is what the next poll reports."""

    def __init__(self, size: int = MIN_FIFO_SIZE) -> None:
        if size < MIN_FIFO_SIZE:
            raise ValueError(f"SAS needs an exception FIFO of at least {MIN_FIFO_SIZE}")
        self.size = size
        self._fifo: deque[PendingException] = deque()
        self._priority: dict[int, PendingException] = {}
        self.dropped = 0  # entries lost to overflow, for tests and diagnostics

    def __len__(self) -> int:
        return len(self._fifo) + len(self._priority)

    def push(self, code: int, data: RteData | None = None, legacy_code: int | None = None) -> None:
        if code in _PRIORITY_RANK:
            self._priority.setdefault(code, PendingException(code))
            return
        if len(self._fifo) >= self.size:
            self._fifo.popleft()
            self.dropped += 1
            self._priority.setdefault(OVERFLOW, PendingException(OVERFLOW))
        self._fifo.append(PendingException(code, data, legacy_code))

    def peek(self) -> PendingException | None:
        if self._priority:
            return self._priority[min(self._priority, key=_PRIORITY_RANK.__getitem__)]
        return self._fifo[0] if self._fifo else None

    def commit(self, item: PendingException) -> None:
        """The host ACKed the reply carrying ``item``: it leaves the queue (if still there)."""
        if self._priority.get(item.code) is item:
            del self._priority[item.code]
        elif self._fifo and self._fifo[0] is item:
            self._fifo.popleft()
        else:
            try:
                self._fifo.remove(item)
            except ValueError:
                pass  # already dropped by an overflow

    def pending(self) -> list[int]:
        """Codes in the order they will be sent (priority first), as RTE mode would report them."""
        prio = sorted(self._priority, key=_PRIORITY_RANK.__getitem__)
        return prio + [item.code for item in self._fifo]

    def pending_items(self) -> list[PendingException]:
        prio = sorted(self._priority, key=_PRIORITY_RANK.__getitem__)
        return [self._priority[c] for c in prio] + list(self._fifo)

    def clear(self) -> None:
        self._fifo.clear()
        self._priority.clear()
