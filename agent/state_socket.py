"""The running agent's state, served on a Unix socket in its data dir (``DATA_DIR/agent.sock``).

Why not only the state file: ``agent-state.json`` is rewritten every ``state_interval`` seconds, and
a full disk (the very moment an operator asks "is the agent alive?") makes that write fail, so the
file grows stale and ``hall-agent status`` used to say "not running" while the agent ran, polled and
held the machines fail-closed. A loaded machine can delay the write past the CLI's freshness window
just as well. The socket answers from memory: creating it needs no space once it exists (it is
bound at start), and answering needs none at all. Its mode is 0660, so the technicians of the
agent's group (systemd/hall-agent.service: data dir 0750, group hallsync) may ask, as they may read
the state file; nobody else can even reach it through the data dir.

Protocol (one request per connection): the client sends a line ``state\\n``; the agent answers with
one JSON document (the same object as the state file) and closes. Anything else gets
``{"error": ...}``. The client side (:func:`ask_agent`) is synchronous, for the CLI.

Owned by :class:`agent.runtime.HallAgent`: started after the outbox, stopped last.

Liveness without the socket: the agent holds an exclusive ``flock`` on ``DATA_DIR/agent.pid`` from
the first thing ``run`` does until its last (:class:`InstanceLock`). The kernel drops it when the
process dies, however it dies, so :func:`lock_holder` answers "is an agent process alive on this
data dir?" also while the agent is still starting (no socket bound yet), while its loop is too busy
to answer, and when a SIGKILLed agent left a socket file behind; a file's age never decides it. The
same lock keeps a second agent off a data dir whose outbox the first one writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("agent.state_socket")

SOCKET_FILE = "agent.sock"
STATE_FILE = "agent-state.json"
"""The file copy of the same state (``agent.runtime`` writes it); named here so the CLI can find
both without importing the whole runtime (seconds on a loaded mini-PC)."""
PID_FILE = "agent.pid"
"""Locked (``flock``) by the running agent for its whole life; holds its pid as text."""
REQUEST = b"state\n"
MAX_REQUEST = 64
MAX_ANSWER = 64 * 1024 * 1024
"""A state document of many hundred devices is a few hundred kB; this only bounds a broken peer."""


class StateServer:
    """Serves ``state()`` as JSON to each connection on the Unix socket ``path``."""

    def __init__(self, path: Path, state: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self._state = state
        self._server: asyncio.AbstractServer | None = None
        self.answered = 0

    async def start(self) -> None:
        """Bind (replacing a socket file a dead agent left behind); OSError if it cannot."""
        if self.path.is_socket():
            self.path.unlink()   # left by a dead agent (two agents on one data dir would share its outbox)
        server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        try:
            os.chmod(self.path, 0o660)
        except OSError:
            server.close()
            raise
        self._server = server
        log.info("state_socket_listening", path=str(self.path))

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await server.wait_closed()
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                request = await reader.readline()
                if request[:MAX_REQUEST].strip() == REQUEST.strip():
                    body = json.dumps(self._state(), sort_keys=True, default=str)
                    self.answered += 1
                else:
                    body = json.dumps({"error": f"unknown request {request[:MAX_REQUEST]!r}; send 'state'"})
                writer.write(body.encode() + b"\n")
                await writer.drain()
        except Exception as exc:  # a client that hangs up or a bug in state() must not hurt the agent
            log.warning("state_socket_request_failed", error=repr(exc))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class AgentNotAnswering(Exception):
    """No state from the socket, and what that proves.

    ``refused``: nothing listens on the socket file, so the agent that bound it is gone.
    ``connected``: the connection was accepted but no answer came in time, so a process still holds
    the listening socket (the kernel accepts for it) but its loop is busy, hung or SIGSTOPped.
    """

    def __init__(self, message: str, *, refused: bool = False, connected: bool = False) -> None:
        super().__init__(message)
        self.refused = refused
        self.connected = connected


def ask_agent(path: Path, timeout: float = 3.0) -> dict[str, Any]:
    """The live agent's state from its socket; raises :class:`AgentNotAnswering` with why not."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise AgentNotAnswering(f"no socket at {path}") from exc
        except ConnectionRefusedError as exc:
            raise AgentNotAnswering(f"nothing listens on {path}", refused=True) from exc
        except OSError as exc:
            raise AgentNotAnswering(f"cannot connect to {path}: {exc.strerror or exc}") from exc
        chunks: list[bytes] = []
        size = 0
        try:
            sock.sendall(REQUEST)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise AgentNotAnswering(f"answer on {path} over {MAX_ANSWER} bytes")
        except TimeoutError as exc:
            raise AgentNotAnswering(f"the agent holds {path} but did not answer within {timeout:g} s "
                                    "(busy, hung or stopped)", connected=True) from exc
        except OSError as exc:
            raise AgentNotAnswering(f"reading {path}: {exc.strerror or exc}") from exc
    finally:
        sock.close()
    try:
        state = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise AgentNotAnswering(f"unreadable answer on {path}") from exc
    if not isinstance(state, dict) or "error" in state:
        raise AgentNotAnswering(f"the agent refused the request: {state!r}"[:200])
    return state


class AgentAlreadyRunning(Exception):
    """Another live process holds the data dir's :data:`PID_FILE` lock."""


class InstanceLock:
    """The running agent's exclusive ``flock`` on ``DATA_DIR/agent.pid`` (see the module docstring).

    ``flock`` locks belong to the open file, not the process: a second :class:`InstanceLock` on the
    same file conflicts even inside one process (two in-process agents on one data dir are refused
    too), and closing the file or the process dying releases it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid; :class:`AgentAlreadyRunning` if another holder has it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AgentAlreadyRunning(f"another agent (pid {_read_pid(self.path) or '?'}) runs on "
                                          f"{self.path.parent}") from exc
            raise
        try:   # the pid is for people (and the error above); the lock is what the CLI trusts
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:   # a full disk: the lock still works, only the text is missing
            log.warning("pid_file_not_written", path=str(self.path), error=str(exc))
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays: an unlocked file says "no agent runs"."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def lock_holder(path: Path) -> bool | None:
    """Whether a live process holds the agent's lock at ``path``: True/False, None if no agent ever
    took it here (no file: an agent that predates the lock, or none ran) or it cannot be checked."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return True if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
    finally:
        os.close(fd)   # closing drops the shared lock we may have just taken
    return False
