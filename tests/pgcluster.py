"""A private PostgreSQL cluster for one test run (issue 14): Debian's server binaries, ``initdb`` in a
temporary directory, a free loopback port, stopped and deleted after. Never the system's cluster.

Why not a container or a mock: the store's PostgreSQL backend must be tested against the real server
the operator runs, and CI has Debian's ``postgresql`` package (``scripts/system-packages``). As root
(CI), the server cannot run as root, so the cluster belongs to the package's ``postgres`` user and
its directory is made under /tmp (pytest's own tmp dirs are root-only).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from mqttlink.broker import free_port

USER = "hallsync"
"""The cluster's superuser (trust authentication on loopback: the cluster lives for one test run)."""


def server_bindir() -> Path | None:
    """Where ``initdb``/``pg_ctl`` are (Debian keeps them out of PATH), newest version first."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                        key=lambda p: int(Path(p).parent.parent.name), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class PgCluster:
    """``start()`` → ``url`` answers; ``stop()`` stops the server and removes every file."""

    def __init__(self) -> None:
        bindir = server_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL's server is not installed: scripts/system-packages installs the "
                               "Debian package postgresql (apt-get install postgresql)")
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="hallsync-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self._owner = None if os.geteuid() != 0 else pwd.getpwnam("postgres")
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._owner is not None:
            command = ["runuser", "-u", self._owner.pw_name, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        return done

    def start(self) -> PgCluster:
        if self._owner is not None:
            os.chown(self.base, self._owner.pw_uid, self._owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-instructions")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base} -c fsync=on "
                   "-c max_connections=100 -c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.base / "server.log"), "-w",
                  "-t", "60", "start")
        self.started = True
        return self

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with Debian's psql client (no Python driver needed); stdout, unaligned."""
        done = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                               str(self.port), "-U", USER, "-d", database, "-c", sql],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()}")
        return done.stdout.strip()

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
                self.started = False
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
