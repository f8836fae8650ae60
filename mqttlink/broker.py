"""Run a real Mosquitto on a loopback port: for tests, benchmarks and ``hall demo``.

Not used in production (a hall's or HQ's broker is a system service, see systemd/). It exists so
every test that needs a broker runs the real one, can kill it (SIGKILL, as a power cut would) and
start it again on the same port with the same persistence file.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from protocols.sync import MAX_PACKET_BYTES

from .url import BrokerUrl


def find_mosquitto() -> str | None:
    """The path of a ``mosquitto`` binary (PATH, then Debian's /usr/sbin), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A Mosquitto process owned by the caller; ``start``/``kill``/``stop``/``restart`` on one port."""

    def __init__(self, workdir: str | Path, *, port: int | None = None, persistence: bool = True,
                 max_queued_messages: int = 100_000, binary: str | None = None,
                 config_text: str | None = None) -> None:
        """``config_text``: a whole configuration instead of the open loopback one (e.g. the shipped
        TLS + password + ACL config with test paths); it must listen on ``port``. Logging to
        ``mosquitto.log`` and, as root, the ``user`` line are added to it."""
        exe = binary or find_mosquitto()
        if exe is None:
            raise FileNotFoundError("mosquitto not found (Debian: apt-get install mosquitto)")
        self.binary = exe
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistence = persistence
        self.max_queued_messages = max_queued_messages
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mosquitto.log"
        self.config_text = config_text

    @property
    def url(self) -> BrokerUrl:
        return BrokerUrl("127.0.0.1", self.port)

    @property
    def url_text(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        if self.config_text is not None:
            return self._custom_config(self.config_text)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"max_queued_messages {self.max_queued_messages}",
            "max_inflight_messages 100",
            f"max_packet_size {MAX_PACKET_BYTES}",  # as systemd/mosquitto/hallsync.conf
            "set_tcp_nodelay true",
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"log_dest file {self.log_path}",
        ]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")  # as root, mosquitto would switch to user 'mosquitto'
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _custom_config(self, text: str) -> Path:
        lines = [text.rstrip("\n"), "log_type error", "log_type warning", "log_type notice",
                 f"log_dest file {self.log_path}"]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen([self.binary, "-c", str(self._config())], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: what a crash or power cut does (no clean session close, no final persistence write)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
