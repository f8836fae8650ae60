"""PostgreSQL for the whole-system benchmarks (issue 14): a server and one fresh database per run.

``--db postgresql`` starts a private throwaway cluster exactly as the tests do (:class:`tests.pgcluster.PgCluster`:
Debian's server binaries, ``initdb`` in a temporary directory, a free loopback port, deleted after);
``--db postgresql://user@host/db`` uses that server instead (the role needs ``CREATEDB``: each run gets
a database of its own, dropped after). The server's CPU is measured only for the private cluster
(its postmaster and every backend, :func:`_common.tree_cpu_seconds`); a server elsewhere is NaN.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import urllib.parse
from pathlib import Path

from _common import tree_cpu_seconds

PRIVATE = "postgresql"
"""The ``--db`` value that asks for a private cluster."""


def is_postgres(db: str) -> bool:
    return db == PRIVATE or db.startswith(("postgresql://", "postgres://"))


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead of its own."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(url: str, *statements: str) -> list[str]:
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        out = []
        for sql in statements:
            value = await con.fetchval(sql) if sql.lstrip().upper().startswith(("SELECT", "SHOW")) else \
                await con.execute(sql)
            out.append(str(value))
        return out
    finally:
        await con.close()


class PgServer:
    """The benchmark's PostgreSQL: ``database(label)`` → a fresh database's URL; ``stop()`` at the end."""

    def __init__(self, db: str) -> None:
        self.cluster = None
        if db == PRIVATE:
            from tests.pgcluster import PgCluster

            self.cluster = PgCluster().start()
            self.url = self.cluster.url
        else:
            self.url = db
        self._made: list[str] = []

    def describe(self) -> str:
        version, fsync, sync_commit, buffers = asyncio.run(_admin(
            self.url, "SHOW server_version", "SHOW fsync", "SHOW synchronous_commit", "SHOW shared_buffers"))
        where = f"private cluster on :{self.cluster.port}" if self.cluster else self.url.split("@")[-1]
        return (f"PostgreSQL {version} ({where}; fsync={fsync}, synchronous_commit={sync_commit}, "
                f"shared_buffers={buffers})")

    def database(self, label: str) -> str:
        name = f"hallsync_bench_{os.getpid()}_{label}"
        asyncio.run(_admin(self.url, f'CREATE DATABASE "{name}"'))
        self._made.append(name)
        return with_database(self.url, name)

    def drop(self, url: str) -> None:
        name = urllib.parse.urlsplit(url).path.lstrip("/")
        if name in self._made:
            asyncio.run(_admin(self.url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            self._made.remove(name)

    def postmaster_pid(self) -> int | None:
        if self.cluster is None:
            return None
        try:
            return int((Path(self.cluster.data) / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used so far (every backend included); NaN for a server elsewhere."""
        pid = self.postmaster_pid()
        return math.nan if pid is None else tree_cpu_seconds(pid)

    def stop(self) -> None:
        try:
            for name in list(self._made):
                self.drop(with_database(self.url, name))
        finally:
            if self.cluster is not None:
                self.cluster.stop()


def parse_workers(text: str) -> list[int]:
    """``--workers 1,2,4`` → [1, 2, 4]."""
    try:
        out = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"--workers {text!r}: expected counts like 1 or 1,2,4")
    return out


def add_db_options(p: argparse.ArgumentParser, sqlite_is: str) -> None:
    """``--db``, ``--workers``, ``--no-sqlite`` and ``--repeat``, as every central benchmark takes them."""
    p.add_argument("--db", default="sqlite", metavar="DB",
                   help=f"central's database: sqlite (default: {sqlite_is}), postgresql (a private throwaway "
                        "cluster, as the tests start) or a postgresql://user@host/db URL (needs CREATEDB: each run "
                        "gets its own database, dropped after); with PostgreSQL the SQLite run comes first in the "
                        "same invocation unless --no-sqlite")
    p.add_argument("--workers", type=parse_workers, default=None, metavar="W[,W…]",
                   help="with PostgreSQL: W processes of serve --role ingest on the shared subscription; a list runs "
                        "each (default 1)")
    p.add_argument("--no-sqlite", action="store_true", help="with PostgreSQL: skip the SQLite run")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every configuration this many times, interleaved; the summary gives median and range")


def check_db_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not (args.db == "sqlite" or is_postgres(args.db)):
        p.error(f"--db {args.db!r}: give sqlite, postgresql or a postgresql://user@host/db URL")
    if args.db == "sqlite" and (args.workers not in (None, [1]) or args.no_sqlite):
        p.error("--workers and --no-sqlite need --db postgresql (SQLite runs one serve)")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")


def configurations(args: argparse.Namespace) -> list[tuple[str, int | None]]:
    """(label, workers) of every run: SQLite with one serve (workers None), PostgreSQL with W ingest processes."""
    out: list[tuple[str, int | None]] = []
    if args.db == "sqlite" or not args.no_sqlite:
        out.append(("sqlite, 1 serve", None))
    if is_postgres(args.db):
        out += [(f"postgresql, {w} ingest", w) for w in (args.workers or [1])]
    return out


def versus_sqlite(labels: list[str], medians: dict[str, float], label: str) -> str:
    """``label``'s median over the SQLite run's (the first configuration), or ``-``."""
    base = medians.get(labels[0]) if labels[0].startswith("sqlite") else None
    return "-" if base is None else f"{medians[label] / base:.2f}×"


def print_scaling(labels: list[str], medians: dict[str, float]) -> None:
    """Each PostgreSQL configuration's median over the first one's (the workers' scaling)."""
    pg_labels = [lab for lab in labels if lab.startswith("postgresql")]
    if len(pg_labels) > 1:
        first = medians[pg_labels[0]]
        print("scaling over the first PostgreSQL configuration: "
              + ", ".join(f"{lab.split(', ')[1]} {medians[lab] / first:.2f}×" for lab in pg_labels))
