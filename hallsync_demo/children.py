"""The demo's child processes: started with their output in a log file, stopped SIGTERM-then-SIGKILL.

Each child gets a session of its own, so the terminal's Ctrl-C reaches only ``hall demo``, which then
stops the children in reverse order (agent before broker, so the agent's last batches and central's
acks still have a broker to cross). On Linux each child also asks the kernel for SIGTERM should the
demo itself die without stopping it (``PR_SET_PDEATHSIG``): no broker left listening after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook setting PR_SET_PDEATHSIG, or None where prctl is not available."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return hook


class ChildFailed(RuntimeError):
    """A child exited (or never came up) while the demo needed it; the message ends with its log's tail."""


@dataclass
class Child:
    """One named child process of the demo."""

    name: str
    argv: list[str]
    log_path: Path
    stop_timeout: float = 10.0
    proc: asyncio.subprocess.Process | None = field(default=None, init=False)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # a local file: no await needed
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, preexec_fn=_die_with_parent())
        finally:
            os.close(log)

    def check(self) -> None:
        """Raise ChildFailed if the child has exited."""
        if self.proc is not None and self.proc.returncode is not None:
            raise ChildFailed(f"{self.name} exited with code {self.proc.returncode}; "
                              f"the end of {self.log_path}:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; the exit code, or None if it never started."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.wait_for(proc.wait(), 10)
        return proc.returncode
