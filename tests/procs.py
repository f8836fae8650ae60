"""Child processes for whole-hall tests and benchmarks: a log file each, killable like in the field."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


class Proc:
    """A child process with stdout+stderr in ``logdir/NAME.log``, in its own session (no stray Ctrl-C)."""

    def __init__(self, name: str, args: list[str], logdir: Path) -> None:
        self.name, self.args, self.log = name, args, logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.args, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would; it must have been running."""
        assert self.alive(), f"{self.name} died early:\n{self.tail()}"
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL (exit code -9) if it does not stop in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"warning: {self.name} did not stop within {timeout} s of SIGTERM; killing it", file=sys.stderr)
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""
