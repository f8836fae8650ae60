"""The agent's durable record of central's commands (``DATA_DIR/commands.db``): at most once, across crashes.

One row per command id, written (WAL, ``synchronous=FULL``) *before* the command touches a machine:

* ``queued``   — received and verified, not yet handed to a machine (safe to apply after a restart);
* ``applying`` — handed to a machine; if the agent dies here, the outcome is unknown, so a restart
  answers ``failed`` ("agent restarted while applying; state unknown, check the machine") and never
  applies it again;
* ``applied`` / ``failed`` / ``expired`` / ``rejected`` (out of the agent's bounds) — final; ``result``
  holds the signed result payload and ``published`` whether the broker acknowledged it (unpublished
  results go out on the next connect).

A database written before ``rejected`` existed has a CHECK without it; :meth:`CommandStore.open` rebuilds
that table once (copying every row in one transaction), since SQLite cannot alter a CHECK in place.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .outbox.store import private_database

STATUSES = ("queued", "applying", "applied", "failed", "expired", "rejected")
TABLE = """
CREATE TABLE {name} (
    id          TEXT PRIMARY KEY,
    action      TEXT NOT NULL,
    device      TEXT,
    game        TEXT,
    status      TEXT NOT NULL CHECK (status IN ({statuses})),
    detail      TEXT NOT NULL DEFAULT '',
    received_at INTEGER NOT NULL,
    command     BLOB NOT NULL,
    result      BLOB,
    published   INTEGER NOT NULL DEFAULT 0
)"""
_STATUSES_SQL = ", ".join(f"'{s}'" for s in STATUSES)

FINAL = frozenset({"applied", "failed", "expired", "rejected"})


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
        self._con = con
        self._create_or_migrate()

    def _create_or_migrate(self) -> None:
        con = self.con
        with con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'commands'").fetchone()
            if row is None:
                con.execute(TABLE.format(name="commands", statuses=_STATUSES_SQL))
            elif "'rejected'" not in row[0]:
                con.execute(TABLE.format(name="commands_new", statuses=_STATUSES_SQL))
                con.execute(f"INSERT INTO commands_new ({_COLUMNS}) SELECT {_COLUMNS} FROM commands")
                con.execute("DROP TABLE commands")
                con.execute("ALTER TABLE commands_new RENAME TO commands")

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
