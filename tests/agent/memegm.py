"""Test helpers: EGMs on the in-process transport pair.

* :class:`ScriptedEgm` answers each host message with the next scripted byte string (or silence),
  for exact fault cases (bad CRC, NACK, busy, chirp);
* :class:`MemoryEgm` puts the simulator's sans-IO ``SasResponder`` (the honest EGM model) on the
  device end of a :func:`memory_pair`, so coordinator tests run without ptys or timing noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.tasks import stop_task
from agent.transport.memory import MemoryTransport, memory_pair
from protocols.sas import framing, wire


@dataclass(frozen=True, slots=True)
class Withheld:
    """A scripted answer the EGM sends, but that reaches the host only when the test calls
    :meth:`ScriptedEgm.release`: after the host gave its poll up, before its next poll."""

    data: bytes


class _Driver:
    def __init__(self, device: MemoryTransport) -> None:
        self.device = device
        self.framer = framing.HostMessageFramer()
        self.heard: list[framing.HostMessage] = []
        self._task: asyncio.Task[None] | None = None
        self.silent = False  # a dead link: hear nothing, say nothing

    async def start(self) -> None:
        await self.device.open()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        # cancelled until done: Python 3.11's wait_for may swallow one cancel (agent/tasks.py)
        await stop_task(self._task)

    async def _run(self) -> None:
        while True:
            chars = await self.device.receive(0.05)
            now = time.monotonic()
            if self.silent:
                continue
            chirp = self.on_idle(now)
            if chirp:
                await self.device.send(chirp)
            for msg in self.framer.feed(chars):
                self.heard.append(msg)
                reply = self.answer(msg, now)
                if reply:
                    await self.device.send(reply)

    def on_idle(self, now: float) -> list[int] | None:
        return None

    def answer(self, msg: framing.HostMessage, now: float) -> list[int] | None:
        raise NotImplementedError


class ScriptedEgm(_Driver):
    """Answers messages to ``address`` from a script of byte strings / character lists / None."""

    def __init__(self, device: MemoryTransport, address: int,
                 script: list[bytes | list[int] | Withheld | None]) -> None:
        super().__init__(device)
        self.address = address
        self.script: deque[bytes | list[int] | Withheld | None] = deque(script)
        self.withheld: list[list[int]] = []

    async def release(self) -> None:
        """The withheld answers reach the host, in order."""
        held, self.withheld = self.withheld, []
        for chars in held:
            await self.device.send(chars)

    def answer(self, msg: framing.HostMessage, now: float) -> list[int] | None:
        if getattr(msg, "address", None) != self.address or not self.script:
            return None
        step = self.script.popleft()
        if step is None:
            return None
        if isinstance(step, Withheld):
            self.withheld.append(list(step.data))
            return None
        return list(step)


class MemoryEgm(_Driver):
    """The simulator's EGM model answering over the in-process pair (chirps included)."""

    def __init__(self, device: MemoryTransport, egm: object, sync_rule: bool = True) -> None:
        from firmware_sim.responder import LinkConfig, SasResponder

        super().__init__(device)
        self.egm = egm
        self.responder = SasResponder(egm, LinkConfig(sync_rule=sync_rule), now=time.monotonic())  # type: ignore[arg-type]
        self.chirps = 0
        self.before_answer: Callable[[framing.HostMessage], None] | None = None
        """Called with each host message before the EGM answers it: a test's player acts at an exact
        point of the agent's polling (a bill between two polls of one meter read, say)."""
        self.late_replies = 0
        """How many of the next replies to this address reach the host late: each goes out only when
        the host's next message arrives, after the host's response timeout (a stalled EGM or a slow
        pty). The EGM's model is untouched: it answers every poll as it always does, only later."""
        self._late: list[int] | None = None

    def on_idle(self, now: float) -> list[int] | None:
        chirp = self.responder.idle(now)
        if chirp:
            self.chirps += 1
            return wire.chars(chirp)
        return None

    def answer(self, msg: framing.HostMessage, now: float) -> list[int] | None:
        if self.before_answer is not None:
            self.before_answer(msg)
        reply = self.responder.handle(msg, now)
        out = list(reply) if reply else []
        late, self._late = self._late or [], None
        if self.late_replies and getattr(msg, "address", None) == self.responder.address:
            self.late_replies -= 1
            self._late, out = out, []
        return late + out or None


class LateHost(MemoryTransport):
    """The host end of a pair on which, while ``late`` is set, every answer arrives just after the
    host stopped waiting for it: each wait runs out empty and what came meanwhile is left unread in
    the input (a starved agent, a loaded pty), whatever the machine's load, so a test of what the
    line does with such answers never depends on timing."""

    late = False

    async def receive(self, timeout: float) -> list[int]:
        if not self.late:
            return await super().receive(timeout)
        # Waits as a real read does (for the answer, at most the timeout), then ends empty: what
        # came stays in the input, unread, as if it had arrived just after the wait.
        if not self._rx:
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        return []


def pair() -> tuple[MemoryTransport, MemoryTransport]:
    return memory_pair("test")


def late_pair() -> tuple[LateHost, MemoryTransport]:
    host, device = LateHost("test:host"), MemoryTransport("test:device")
    host.peer, device.peer = device, host
    return host, device


async def next_fact(queue: asyncio.Queue, kind: type, timeout: float, where: Callable[[Any], bool]) -> Any:
    """The next fact of ``kind`` (matching ``where``) from a coordinator's queue, skipping others."""
    async def find() -> Any:
        while True:
            fact = await queue.get()
            if isinstance(fact, kind) and where(fact):
                return fact
    return await asyncio.wait_for(find(), timeout)
