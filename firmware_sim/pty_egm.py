"""One simulated EGM on a pty: the I/O around the sans-IO responder.

The server owns the pty master (non-blocking, read through ``loop.add_reader``) and keeps a slave
fd of its own open, because when the last slave fd closes the master reads fail with EIO until
someone reopens it (notes §0.2) — and saspy-style hosts close the port after every poll. The slave
is put in raw mode so the line discipline translates nothing.

Framing: ``marks`` (default) carries the wakeup bit as PARMRK marks in both directions (``FF 00 xx``
= xx with the wakeup bit, ``FF FF`` = a literal FF); the EGM's replies are unmarked except that FF is
doubled, and its chirp is marked. ``structural`` serves hosts that cannot mark: host messages are
framed by their structure plus idle gaps, and replies go out raw.

Players run in a task of the server; faults (``faults.py``: one-shot knobs and random wire noise) are
applied on the way out, after the EGM's own bookkeeping, so they never change what the machine did.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from typing import Literal

import structlog

from protocols.sas.framing import HostMessageFramer
from protocols.sas.wire import MarkDecoder, mark_message

from .egm import Egm, PlayRefused
from .faults import Faults
from .pacing import act_until_done
from .players import Player
from .responder import LinkConfig, SasResponder
from .tasks import DeviceTasks

Framing = Literal["marks", "structural"]
FRAMINGS: tuple[str, ...] = ("marks", "structural")
STRUCTURAL_GAP = 0.010      # an idle line this long ends a message in structural mode
_HOUSEKEEPING_MAX_SLEEP = 0.1
HOST_METERS_WAIT = 30.0     # wait_for_host: play starts this long after a host's first poll if it reads no meters

log = structlog.get_logger("firmware_sim.pty")


class PtyEgmServer:
    """Serves ``egm`` on a fresh pty; ``await start()`` returns the slave path a host opens."""

    def __init__(self, egm: Egm, framing: Framing = "marks", faults: Faults | None = None, *,
                 link: LinkConfig | None = None, gap: float = STRUCTURAL_GAP, player: Player | None = None,
                 wait_for_host: bool = False) -> None:
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
        self.egm = egm
        self.framing: Framing = framing
        self.faults = faults or Faults()
        self.link = link or LinkConfig()
        self.gap = gap
        self.player = player or (Player(egm) if egm.pace > 0 else None)
        self.wait_for_host = wait_for_host
        self.host_seen = asyncio.Event()
        """Set once a SAS host has polled the machine and read its meters: with ``wait_for_host`` play
        waits for it (EGMs can be set to require their host), so a test counts every game from the
        host's first meter read. Before that read no host can account for anything: an event lost
        then is inside the meters the host starts from (a hall opens once its system is online)."""
        self._host_first_seen: float | None = None
        self.finished = asyncio.Event()   # the players are done with their rounds
        self.path: str | None = None
        self.responder: SasResponder | None = None
        self.bytes_in = 0
        self.writes_dropped = 0
        self._master = -1
        self._slave = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._decoder = MarkDecoder()
        self._framer = HostMessageFramer(structural=framing == "structural")
        self._tasks = DeviceTasks(f"egm{egm.address}", address=egm.address)
        self._handles: set[asyncio.TimerHandle] = set()
        self._gap_handle: asyncio.TimerHandle | None = None
        self._last_rx = 0.0

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> str:
        if self.path is not None:
            raise RuntimeError("server already started")
        loop = asyncio.get_running_loop()
        self._loop = loop
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.path = os.ttyname(slave)
        self.responder = SasResponder(self.egm, self.link, now=loop.time())
        loop.add_reader(master, self._on_readable)
        self._tasks.spawn(self._housekeeping(), "housekeeping")
        if self.player is not None:
            self._tasks.spawn(self._play(), "players")
        elif self.egm.rounds is not None:
            self.finished.set()
        log.info("egm.started", address=self.egm.address, port=self.path, framing=self.framing)
        return self.path

    async def stop(self) -> None:
        """Cancel every task, timer and the reader, then close both fds. Safe to call twice."""
        await self._tasks.cancel_all()
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        if self._gap_handle is not None:
            self._gap_handle.cancel()
            self._gap_handle = None
        if self._master >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self._master)
            for fd in (self._master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._master = self._slave = -1
            log.info("egm.stopped", address=self.egm.address)

    async def __aenter__(self) -> PtyEgmServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- power ---------------------------------------------------------------------------------------

    async def power_cycle(self, off_seconds: float = 0.0) -> None:
        """Power lost (18), ``off_seconds`` of silence, power back (17); meters stay in NVRAM."""
        self.egm.power_off()
        self._decoder.reset()
        self._framer.gap()
        if off_seconds > 0:
            await asyncio.sleep(off_seconds)
        self.egm.power_on()

    # ---- receive -------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO cannot happen while we hold a slave fd; nothing else is recoverable here
        if not data or self.faults.link_dead():
            return
        self.bytes_in += len(data)
        assert self._loop is not None and self.responder is not None
        now = self._loop.time()
        if self.framing == "marks":
            chars = self._decoder.feed(data)
        else:
            chars = list(data)
            self._last_rx = now
            if self._gap_handle is None:
                self._gap_handle = self._loop.call_later(self.gap, self._gap_check)
        handle = self.responder.handle
        for msg in self._framer.feed(chars):
            reply = handle(msg, now)
            if reply is not None:
                self._send(reply)
        if self.responder.host_seen and not self.host_seen.is_set():
            if self._host_first_seen is None:
                self._host_first_seen = now
            # a host that never reads meters still gets play, a while after its first poll
            if self.responder.meters_read or now - self._host_first_seen > HOST_METERS_WAIT:
                self.host_seen.set()

    def _gap_check(self) -> None:
        assert self._loop is not None
        self._gap_handle = None
        idle = self._loop.time() - self._last_rx
        if idle >= self.gap * 0.9:
            self._framer.gap()   # a cut-short message is dropped; an EGM does not answer it
        else:
            self._gap_handle = self._loop.call_later(self.gap - idle, self._gap_check)

    # ---- send ----------------------------------------------------------------------------------------

    def _send(self, reply: bytes, chirp: bool = False) -> None:
        faults = self.faults
        data = faults.mangle(reply) if faults.mangles else reply
        if not data or faults.link_dead():
            return
        if self.framing == "marks":
            wire = mark_message(data) if chirp else data.replace(b"\xff", b"\xff\xff")
        else:
            wire = data
        if faults.reply_delay > 0 and self._loop is not None:
            holder: list[asyncio.TimerHandle] = []

            def later() -> None:
                self._handles.discard(holder[0])
                self._write(wire)

            holder.append(self._loop.call_later(faults.reply_delay, later))
            self._handles.add(holder[0])
        else:
            self._write(wire)

    def _write(self, wire: bytes) -> None:
        if self._master < 0:
            return
        try:
            os.write(self._master, wire)
        except (BlockingIOError, OSError):
            self.writes_dropped += 1   # nobody drains the line: bytes are lost like on a real wire

    # ---- tasks ---------------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Chirps after a loop break, and power cycles requested through the fault knobs."""
        assert self._loop is not None and self.responder is not None
        loop, responder = self._loop, self.responder
        while True:
            if self.faults.power_off_for is not None:
                off, self.faults.power_off_for = self.faults.power_off_for, None
                self._tasks.spawn(self.power_cycle(off), "power")
            chirp = responder.idle(loop.time())
            if chirp is not None:
                self._send(chirp, chirp=True)   # lost while the link is dead, like the polls
            delay = min(_HOUSEKEEPING_MAX_SLEEP, responder.next_idle_check(loop.time()) - loop.time())
            await asyncio.sleep(max(0.005, delay))

    async def _play(self) -> None:
        assert self.player is not None
        if self.wait_for_host:
            await self.host_seen.wait()
        await act_until_done(self.player.act, PlayRefused, self.egm.pace, self.finished, address=self.egm.address)
