"""The metrics' part of the SQLite store: the few aggregate reads ``GET /metrics`` needs per scrape.

A mixin of :class:`central.store.sqlite.SqliteStore` (which provides ``_reader``). Each read is one
indexed query, cheap enough to run on every scrape (Prometheus scrapes every 15-60 s).
"""

from __future__ import annotations

import sqlite3
from typing import Any


class MetricsSqliteMixin:
    """Metrics methods of the :class:`~central.store.base.Store` protocol on SQLite."""

    _reader: Any

    async def command_counts(self) -> dict[str, int]:
        def body(con: sqlite3.Connection) -> dict[str, int]:
            return {str(status): int(n) for status, n in
                    con.execute("SELECT status, COUNT(*) FROM commands GROUP BY status")}

        return await self._reader.run(body)  # type: ignore[no-any-return]
