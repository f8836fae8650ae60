"""The outbox's SQLite file: schema, pragmas and every statement, all synchronous.

Everything here runs on the outbox's single worker thread (see :mod:`agent.outbox.outbox`), which
owns the one connection; nothing here is thread-safe on purpose, because nothing else may touch it.

Why this shape:

* ``journal_mode=WAL`` + ``synchronous=FULL``: a commit is on disk when ``COMMIT`` returns (WAL with
  ``NORMAL`` may lose the last commits on power loss, notes/edge-lessons.md §5). Explicit
  ``BEGIN IMMEDIATE``/``COMMIT``, so the group-commit boundary is exactly what the caller decides.
* ``seq`` is the ``INTEGER PRIMARY KEY`` (the rowid): rows are appended at the b-tree's right edge,
  so an insert is cheap however large the backlog, and paging by ``seq`` is an index range scan.
* Acks are a watermark in ``meta`` (``acked_through``/``acked_hash``), not a flag per row: an ack of
  10 000 events is one row update, and "unacked" is simply ``seq > acked_through``.
* Pruning deletes a prefix of acked rows and records the hash it cut at (``pruned_through``/
  ``pruned_hash``), and never deletes the newest row: the chain can always be continued and the
  first remaining row's ``prev_hash`` can always be checked, even after a restart.
* No ``auto_vacuum``, no ``VACUUM``: pruned rows leave free pages in the file, and the next appends
  fill them before the file grows (measured: 60k events pruned, 40k appended, the file stayed at
  61.6 MB). So the file keeps its high-water size, and that free part is the outbox's own reserve:
  after an HQ outage it is there for the next one, and an outbox with free pages still commits
  while something else fills the disk. Returning it (incremental vacuum) would rewrite live rows
  on every prune, and a full ``VACUUM`` needs the file's size free again and blocks appends.
  The size cap therefore counts pages in use (:meth:`OutboxStore.space`), not the file's size.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from protocols.sync import GENESIS_HASH, Event, StoredEvent, decode_event, encode_event, stored_event

from .errors import ChainMismatch, HallMismatch

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY,
    id         TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    agent_time INTEGER NOT NULL,
    hash       TEXT    NOT NULL,
    body       BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    device TEXT PRIMARY KEY,
    state  BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
"""

AckOutcome = Literal["acked", "stale", "beyond_last", "hash_mismatch"]


@dataclass(frozen=True, slots=True)
class ChainState:
    """What is committed, as one immutable snapshot (the event loop reads it without locking)."""

    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    acked_through: int = 0
    acked_hash: str = GENESIS_HASH
    pruned_through: int = 0
    pruned_hash: str = GENESIS_HASH
    oldest_unacked_agent_time: int | None = None
    commits: int = 0



PRIVATE_MODE = 0o640
"""The agent's files: the service user writes, its group (technicians' CLI) reads, nobody else."""


def private_database(path: str | os.PathLike[str]) -> None:
    """The hall's record is for the agent's user and its group only (technicians in group hallsync run
    ``hall-agent status``; the README's install): create the SQLite file 0640 before SQLite does (its
    -wal and -shm files take the main file's mode), and tighten the files of an older install."""
    name = os.fspath(path)
    try:
        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_MODE))
    except FileExistsError:
        pass
    for file in (name, name + "-wal", name + "-shm"):
        try:
            if os.stat(file).st_mode & 0o137:
                os.chmod(file, PRIVATE_MODE)
        except FileNotFoundError:
            continue

class OutboxStore:
    """One SQLite outbox file for one hall. Open lazily; reopen after any failure."""

    def __init__(self, path: str | os.PathLike[str], hall: str) -> None:
        self.path = Path(path)
        self.hall = hall
        self.state = ChainState()
        self._conn: sqlite3.Connection | None = None

    # -- connection -----------------------------------------------------------------------------

    def open(self) -> ChainState:
        """Open (or create) the file, check it belongs to this hall, and load the chain state."""
        if self._conn is not None:
            return self.state
        private_database(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode!r}, WAL required")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA journal_size_limit=67108864")  # truncate the WAL back to 64 MB after checkpoints
            conn.execute("BEGIN IMMEDIATE")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if "hall" not in meta:
                conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                                 [("hall", self.hall), ("schema_version", SCHEMA_VERSION)])
            elif meta["hall"] != self.hall:
                raise HallMismatch(f"{self.path} holds the chain of hall {meta['hall']!r}, not {self.hall!r}")
            conn.execute("COMMIT")
            self._conn = conn
            self.state = self._load(conn, meta, self.state.commits)
        except BaseException:
            conn.close()
            self._conn = None
            raise
        return self.state

    def close(self) -> None:
        """Close the connection (idempotent); a later call reopens it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.open()
        assert self._conn is not None
        return self._conn

    def _load(self, conn: sqlite3.Connection, meta: dict[str, object], commits: int) -> ChainState:
        pruned = int(meta.get("pruned_through", 0))  # type: ignore[call-overload]
        pruned_hash = str(meta.get("pruned_hash", GENESIS_HASH))
        acked = int(meta.get("acked_through", 0))  # type: ignore[call-overload]
        acked_hash = str(meta.get("acked_hash", GENESIS_HASH))
        last = conn.execute("SELECT seq, body FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        first = conn.execute("SELECT seq, body FROM events ORDER BY seq LIMIT 1").fetchone()
        if last is None:
            last_seq, last_hash = pruned, pruned_hash
        else:
            # Decoding checks each row's own hash: a damaged head or tail is found at open, not in a batch.
            tail, head = decode_event(last[1]), decode_event(first[1])
            if first[0] != pruned + 1 or head.prev_hash != pruned_hash:
                raise ChainMismatch(f"first stored seq {first[0]} does not follow the pruned prefix {pruned}")
            last_seq, last_hash = tail.seq, tail.hash
        if acked > last_seq:
            raise ChainMismatch(f"acked_through {acked} is beyond the last stored seq {last_seq}")
        return ChainState(last_seq=last_seq, last_hash=last_hash, acked_through=acked, acked_hash=acked_hash,
                          pruned_through=pruned, pruned_hash=pruned_hash,
                          oldest_unacked_agent_time=self._agent_time(conn, acked + 1), commits=commits)

    @staticmethod
    def _agent_time(conn: sqlite3.Connection, seq: int) -> int | None:
        row = conn.execute("SELECT agent_time FROM events WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else int(row[0])

    # -- appending --------------------------------------------------------------------------------

    def commit(self, events: Sequence[Event], checkpoints: Mapping[str, bytes] | None = None) -> list[StoredEvent]:
        """Insert sealed ``events`` (contiguous, continuing the chain) in one durable transaction, and
        return the rows this call inserted as stored (their bytes, for sending without reading them back).

        ``checkpoints`` (device → opaque state of the agent's normalizer) are written in the same
        transaction, so after a crash the normalizer resumes from exactly the state that produced
        the committed events: whatever it had seen but not committed then shows up in the meters as
        a ``missed`` difference instead of vanishing.

        After a failure the connection is closed, so the next call reopens the file and reloads the
        committed state from disk; events an earlier, ambiguous commit (an fsync error) did store are
        recognised by seq and hash and skipped, so a retry never duplicates and never forks.
        """
        try:
            conn = self._db()
            todo = events[self._already_stored(conn, events):] if events else []
            if events and not todo:
                return []  # that transaction committed, checkpoints included
            if not todo and not checkpoints:
                return []
            rows = [StoredEvent(e.seq, e.agent_time, e.prev_hash, e.hash, encode_event(e)) for e in todo]
            conn.execute("BEGIN IMMEDIATE")
            if todo:
                conn.executemany(
                    "INSERT INTO events(seq, id, device, type, agent_time, hash, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(e.seq, e.id, e.device, e.type, e.agent_time, e.hash, row.body)
                     for e, row in zip(todo, rows, strict=True)])
            if checkpoints:
                conn.executemany("INSERT OR REPLACE INTO checkpoints(device, state) VALUES (?, ?)",
                                 list(checkpoints.items()))
            conn.execute("COMMIT")
        except BaseException:
            self._abandon()
            raise
        if not todo:
            return rows
        s = self.state
        oldest = s.oldest_unacked_agent_time
        if s.last_seq == s.acked_through:  # everything was acked: the first new event is the oldest unacked
            oldest = todo[0].agent_time
        self.state = replace(s, last_seq=todo[-1].seq, last_hash=todo[-1].hash, commits=s.commits + 1,
                             oldest_unacked_agent_time=oldest)
        return rows

    def load_checkpoints(self) -> dict[str, bytes]:
        """Every device's last committed normalizer checkpoint."""
        return {str(d): bytes(b) for d, b in self._db().execute("SELECT device, state FROM checkpoints")}

    def _already_stored(self, conn: sqlite3.Connection, events: Sequence[Event]) -> int:
        """How many leading ``events`` the file already holds (0 in normal operation)."""
        s, first = self.state, events[0]
        if s.last_seq == first.seq - 1:
            if s.last_hash != first.prev_hash:
                raise ChainMismatch(f"stored chain ends in another hash than seq {first.seq} links to")
            return 0
        if s.last_seq < first.seq - 1:
            raise ChainMismatch(f"file ends at seq {s.last_seq}, but seq {first.seq - 1} was committed")
        stored = s.last_seq - first.seq + 1
        if stored > len(events):
            raise ChainMismatch(f"file holds seq {s.last_seq}, beyond the events being committed")
        row = conn.execute("SELECT hash FROM events WHERE seq = ?", (s.last_seq,)).fetchone()
        if row is None or row[0] != events[stored - 1].hash:
            raise ChainMismatch(f"stored seq {s.last_seq} differs from the event held in memory")
        return stored

    def _abandon(self) -> None:
        """Roll back whatever is open and drop the connection, so the next call starts clean."""
        if self._conn is not None:
            try:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        self.close()

    # -- reading and acks ---------------------------------------------------------------------------

    def read(self, after_seq: int, limit: int) -> list[Event]:
        """Up to ``limit`` events with ``seq > after_seq``, in seq order (one short read transaction)."""
        rows = self._db().execute("SELECT body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                  (after_seq, limit)).fetchall()
        return [decode_event(body) for (body,) in rows]

    def read_stored(self, after_seq: int, limit: int) -> list[StoredEvent]:
        """:meth:`read` for sending: the stored bytes, each checked against its hash, not decoded.

        A damaged row raises ``protocols.sync.BrokenChain`` or ``Malformed`` naming its seq, as
        :meth:`read` does (see ``protocols.sync.stored_event`` for why the hash check suffices).
        """
        rows = self._db().execute("SELECT seq, agent_time, hash, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                                  (after_seq, limit)).fetchall()
        return [stored_event(body, seq, hash_, agent_time) for seq, agent_time, hash_, body in rows]

    def hash_at(self, seq: int) -> str | None:
        """The stored hash of ``seq`` (GENESIS for 0, the pruned cut for a pruned seq), else None."""
        s = self.state
        if seq == s.pruned_through:
            return s.pruned_hash
        row = self._db().execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    def ack(self, through_seq: int, last_hash: str) -> AckOutcome:
        """Move the acked watermark forward to ``through_seq`` if ``last_hash`` is the stored hash there."""
        s = self.state
        if through_seq <= s.acked_through:
            return "stale"
        if through_seq > s.last_seq:
            return "beyond_last"
        if self.hash_at(through_seq) != last_hash:
            return "hash_mismatch"
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                             [("acked_through", through_seq), ("acked_hash", last_hash)])
            conn.execute("COMMIT")
        except BaseException:
            self._abandon()
            raise
        self.state = replace(s, acked_through=through_seq, acked_hash=last_hash,
                             oldest_unacked_agent_time=self._agent_time(conn, through_seq + 1))
        return "acked"

    # -- pruning ------------------------------------------------------------------------------------

    def prune_chunk(self, cutoff_agent_time: int, max_rows: int, max_used_bytes: int | None = None) -> int:
        """Delete up to ``max_rows`` of the oldest acked rows that are before the cutoff or over the size cap.

        Deletes a prefix only, and never beyond the ack watermark nor the newest row. By age it stops
        at the first row young enough to keep (agent clocks can step, so an older seq may carry a
        later time); by size (``max_used_bytes``: pages in use, see :meth:`space`) it takes as many
        more of the oldest acked rows as the excess holds at the file's average bytes per row, young
        or not: whichever rule deletes more wins, so the smaller retention holds. Returns how many
        rows went; 0 means there is nothing more to prune now.
        """
        s = self.state
        first = s.pruned_through + 1
        upto = min(s.acked_through, s.last_seq - 1, first + max_rows - 1)
        if upto < first:
            return 0
        conn = self._db()
        young = conn.execute("SELECT min(seq) FROM events WHERE seq BETWEEN ? AND ? AND agent_time >= ?",
                             (first, upto, cutoff_agent_time)).fetchone()[0]
        end = upto if young is None else young - 1
        if max_used_bytes is not None:
            used, _ = self.space()
            rows = s.last_seq - s.pruned_through
            if used > max_used_bytes and rows > 0:
                over = math.ceil((used - max_used_bytes) * rows / used)
                end = max(end, min(upto, first + over - 1))
        if end < first:
            return 0
        cut_hash = self.hash_at(end)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM events WHERE seq BETWEEN ? AND ?", (first, end))
            conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                             [("pruned_through", end), ("pruned_hash", cut_hash)])
            conn.execute("COMMIT")
        except BaseException:
            self._abandon()
            raise
        self.state = replace(s, pruned_through=end, pruned_hash=str(cut_hash))
        return end - first + 1

    def space(self) -> tuple[int, int]:
        """(bytes in use, bytes free) in the database file: its pages less the freelist (header reads,
        no scan). Free pages are what pruning left; appends reuse them before the file grows."""
        conn = self._db()
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * page, free * page

    def first_agent_time(self) -> int | None:
        """agent_time of the oldest row still stored: how far back the kept history reaches."""
        return self._agent_time(self._db(), self.state.pruned_through + 1)

    def size_bytes(self) -> int:
        """Bytes on disk: the database file plus its WAL and shared-memory index."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except OSError:
                pass
        return total


def inspect_outbox(path: str | os.PathLike[str]) -> dict[str, object]:
    """Read-only summary of an outbox file, for ``hall-agent outbox`` while the agent is stopped.

    Opens the file with ``mode=ro`` (never creates, never writes, safe beside a running agent).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist (no agent has run with this data dir)")
    conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        acked = int(meta.get("acked_through", 0))
        pruned = int(meta.get("pruned_through", 0))
        row = conn.execute("SELECT MAX(seq), COUNT(*) FROM events").fetchone()
        last = int(row[0]) if row[0] is not None else pruned
        oldest = conn.execute("SELECT agent_time FROM events WHERE seq = ?", (acked + 1,)).fetchone()
        by_type = dict(conn.execute("SELECT type, COUNT(*) FROM events WHERE seq > ? GROUP BY type", (acked,)))
        free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        free = free_pages * int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()
    size = sum(os.stat(f"{p}{s}").st_size for s in ("", "-wal", "-shm") if os.path.exists(f"{p}{s}"))
    return {"hall": meta.get("hall"), "last_seq": last, "acked_through": acked, "unacked_count": last - acked,
            "oldest_unacked_agent_time": int(oldest[0]) if oldest and last > acked else None,
            "pruned_through": pruned, "stored_rows": int(row[1]), "unacked_by_type": by_type, "db_bytes": size,
            "free_bytes": free}
