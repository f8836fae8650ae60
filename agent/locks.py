"""Which machines the agent locked because its outbox failed, kept where a full disk cannot stop it.

Fail closed (design.md, delivery rule 1) disables every machine while the outbox cannot commit, and
enables them again when it recovers — but only those the agent itself disabled, so that a machine
HQ switched off stays off. That set lived in memory only: an agent killed while failed closed (a
full disk makes a hung or crashing process likely, and systemd restarts it) came back not knowing it
had locked the hall, and every machine stayed disabled until someone noticed (bench/chaos.py:
an agent SIGKILL during a full disk left the floor locked for good).

The record is a file of fixed size allocated when the agent starts, while there is space; it is
then only ever overwritten in place, which needs no new block on a full filesystem.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

import structlog

log = structlog.get_logger("agent.locks")

LOCKS_FILE: Final = "fail-closed-locks"
SIZE: Final = 16384
"""Bytes reserved: a JSON list of device ids (a hall's few hundred fit many times over)."""


class LockRecord:
    """``prepare()`` at start (returns what a previous process left locked), ``write()`` on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def prepare(self) -> list[str]:
        """Open (allocating it if new) and read the record; never raises (logged instead)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.error("fail_closed_record_unavailable", path=str(self.path), error=str(exc))
            return []
        self._fd = fd
        try:
            raw = os.pread(fd, SIZE, 0)
            if len(raw) < SIZE:
                os.pwrite(fd, raw + b" " * (SIZE - len(raw)), 0)   # blocks allocated now, while there is room
                os.fsync(fd)
            text = raw.decode("utf-8", "replace").strip(" \x00")
            devices = json.loads(text) if text else []
        except (OSError, ValueError) as exc:
            log.error("fail_closed_record_unreadable", path=str(self.path), error=str(exc))
            return []
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            log.error("fail_closed_record_unreadable", path=str(self.path), error="not a list of device ids")
            return []
        return devices

    def write(self, devices: set[str]) -> bool:
        """Overwrite the record in place; False (logged) if it could not be written."""
        if self._fd is None:
            return False
        body = json.dumps(sorted(devices)).encode()
        if len(body) > SIZE:
            log.error("fail_closed_record_too_small", devices=len(devices))
            return False
        try:
            os.pwrite(self._fd, body + b" " * (SIZE - len(body)), 0)
            os.fsync(self._fd)
        except OSError as exc:
            log.error("fail_closed_record_not_written", path=str(self.path), error=str(exc))
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
