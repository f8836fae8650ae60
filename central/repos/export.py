"""The regulatory export: per hall, the contiguous range of a period and its events in pages,
with the hall's signed batch headers.

The records and the repository's interface are backend-neutral: each backend implements
:class:`ExportRepository` with its own SQL (SQLite in :mod:`central.store`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .ingest import SignedHeader


@dataclass(frozen=True, slots=True)
class ExportRange:
    """One hall's part of an export: the contiguous seqs ``first_seq..last_seq`` (None: no events)."""

    hall: str
    first_seq: int | None
    last_seq: int | None


@dataclass(frozen=True, slots=True)
class ExportRow:
    """A stored event with its ``data`` still as the canonical JSON text it was hashed in."""

    hall: str
    seq: int
    id: str
    device: str
    type: str
    device_time: int | None
    agent_time: int
    central_time: int
    prev_hash: str
    hash: str
    data: str


@runtime_checkable
class ExportRepository(Protocol):
    """Reads a period of each hall's chain for a regulatory export."""

    async def export_ranges(self, *, time_from: int, time_to: int, hall: str | None = None,
                            halls: Sequence[str] | None = None) -> list[ExportRange]:
        """Per registered hall in scope, by id: the seqs from the first event with agent_time ≥ ``time_from``
        to the last with agent_time < ``time_to`` — every stored event between them included, so an
        export is a gap-free piece of each chain even where an agent's clock stepped back."""
        ...

    async def export_rows(self, hall: str, *, after_seq: int, through_seq: int, limit: int) -> list[ExportRow]:
        """One page: the hall's events with ``after_seq < seq <= through_seq``, by seq, at most ``limit``."""
        ...

    def export_pages(self, hall: str, first_seq: int, last_seq: int, *,
                     page_size: int = 1000) -> AsyncIterator[list[ExportRow]]:
        """The hall's events ``first_seq..last_seq`` in pages of at most ``page_size`` (constant memory)."""
        ...

    async def signed_header_covering(self, hall: str, seq: int) -> SignedHeader | None:
        """The stored signed batch header with the smallest ``last_seq >= seq`` (None if none)."""
        ...
