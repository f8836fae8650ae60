"""The agent's durable record of central's commands (``DATA_DIR/commands.db``): at most once, across crashes.

One row per command id, written (WAL, ``synchronous=FULL``) *before* the command touches a machine:

* ``queued``   — received and verified, not yet handed to a machine (safe to apply after a restart);
* ``applying`` — handed to a machine; if the agent dies here, the outcome is unknown, so a restart
  answers ``failed`` ("agent restarted while applying; state unknown, check the machine") and never
  applies it again;
* ``applied`` / ``failed`` / ``expired`` — final; ``result`` holds the signed result payload and
  ``published`` whether the broker acknowledged it (unpublished results go out on the next connect).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .outbox.store import private_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id          TEXT PRIMARY KEY,
    action      TEXT NOT NULL,
    device      TEXT,
    game        TEXT,
    status      TEXT NOT NULL CHECK (status IN ('queued', 'applying', 'applied', 'failed', 'expired')),
    detail      TEXT NOT NULL DEFAULT '',
    received_at INTEGER NOT NULL,
    command     BLOB NOT NULL,
    result      BLOB,
    published   INTEGER NOT NULL DEFAULT 0
);
"""

FINAL = frozenset({"applied", "failed", "expired"})


@dataclass(frozen=True, slots=True)
class CommandRow:
    id: str
    action: str
    device: str | None
    game: str | None
    status: str
    detail: str
    received_at: int
    command: bytes
    result: bytes | None
    published: bool


_COLUMNS = "id, action, device, game, status, detail, received_at, command, result, published"


def _row(r: tuple) -> CommandRow:
    return CommandRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bytes(r[7]),
                      None if r[8] is None else bytes(r[8]), bool(r[9]))


class CommandStore:
    """Small synchronous SQLite store; every write is one committed, fsynced transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._con: sqlite3.Connection | None = None

    def open(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_database(self.path)
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.executescript(SCHEMA)
        self._con = con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    @property
    def con(self) -> sqlite3.Connection:
        if self._con is None:
            raise RuntimeError("command store is not open")
        return self._con

    def get(self, command_id: str) -> CommandRow | None:
        r = self.con.execute(f"SELECT {_COLUMNS} FROM commands WHERE id = ?", (command_id,)).fetchone()
        return None if r is None else _row(r)

    def insert(self, command_id: str, action: str, device: str | None, game: str | None, status: str,
               received_at: int, command: bytes, *, detail: str = "", result: bytes | None = None) -> bool:
        """Record a new id; False if it was already there (then nothing changes)."""
        with self.con:
            cur = self.con.execute(
                "INSERT OR IGNORE INTO commands (id, action, device, game, status, detail, received_at, command,"
                " result, published) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (command_id, action, device, game, status, detail, received_at, command, result))
        return cur.rowcount == 1

    def set_status(self, command_id: str, status: str) -> None:
        with self.con:
            self.con.execute("UPDATE commands SET status = ? WHERE id = ?", (status, command_id))

    def finish(self, command_id: str, status: str, detail: str, result: bytes) -> None:
        assert status in FINAL
        with self.con:
            self.con.execute("UPDATE commands SET status = ?, detail = ?, result = ?, published = 0 WHERE id = ?",
                             (status, detail, result, command_id))

    def mark_published(self, command_id: str) -> None:
        with self.con:
            self.con.execute("UPDATE commands SET published = 1 WHERE id = ?", (command_id,))

    def with_status(self, status: str) -> list[CommandRow]:
        return [_row(r) for r in self.con.execute(
            f"SELECT {_COLUMNS} FROM commands WHERE status = ? ORDER BY received_at, rowid", (status,))]

    def unpublished(self) -> list[CommandRow]:
        return [_row(r) for r in self.con.execute(
            f"SELECT {_COLUMNS} FROM commands WHERE published = 0 AND result IS NOT NULL ORDER BY received_at, rowid")]

    def counts(self) -> dict[str, int]:
        return dict(self.con.execute("SELECT status, COUNT(*) FROM commands GROUP BY status").fetchall())
