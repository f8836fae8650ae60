"""The one poll coordinator of the agent: schedule, back-off, link state and staleness of one device.

In the spirit of Home Assistant's ``DataUpdateCoordinator`` (one object owns *when* a device is
asked, the protocol code owns *how*), every device family's coordinator
(:class:`agent.sas.coordinator.MachineCoordinator`, :class:`agent.modbus.coordinator.TerminalCoordinator`)
is a :class:`PollCoordinator`. What they share lives here once:

* **the run loop** (:meth:`PollCoordinator._run`): while the link is up one :meth:`~PollCoordinator._poll`
  turn after another, paced by :meth:`~PollCoordinator._pace`; while it is down
  :meth:`~PollCoordinator._probe` turns, waiting the back-off after each failed one. A turn that
  raises :class:`LinkLost` (the link dropped in the middle of a job) goes back to probing at once.
* **one back-off** (:class:`Backoff`) with one set of option names for every family
  (:class:`PollOptions`): the first wait ``probe_interval``, doubled after each failed probe up to
  ``probe_max_interval``, back to the first wait after an answer;
* **link state** (:class:`LinkState`): ``link_down_after`` consecutive failures take the device down
  (reported once per outage, also for a device that never answered since the start), the next
  answer brings it up (``connect`` the first time, ``recovered`` after);
* **staleness** (:class:`Staleness`): a value the device must keep moving (a terminal's heartbeat
  register) that has not moved for ``stale_after`` seconds.

The facts a coordinator learns go to ``facts``: an ``asyncio.Queue`` or anything with its ``put`` /
``put_nowait`` (:class:`FactSink`; the runtime gives each family its own sink). A full sink slows the
coordinator down (back-pressure), it never drops a fact.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import structlog

from .tasks import stop_task

log = structlog.get_logger("agent.polling")


class LinkLost(Exception):
    """Raised inside a turn when the link went down; the run loop goes back to probing at once."""


class FactSink(Protocol):
    """Where a coordinator hands its facts: ``asyncio.Queue`` is one."""

    async def put(self, item: Any) -> None: ...

    def put_nowait(self, item: Any) -> None: ...


@dataclass(frozen=True)
class PollOptions:
    """The options every family's poll configuration has, under these names (each family's config
    adds its own and may change the defaults; these are the SAS machine's)."""

    poll_interval: float = 0.2       # the cadence while the link is up (s)
    link_down_after: int = 5         # consecutive failed polls (or probes) → the link is down
    probe_interval: float = 0.5      # first wait between probes while the link is down (s)
    probe_max_interval: float = 5.0  # back-off cap (s)
    command_timeout: float = 5.0     # how long a command may take, waiting for the line included (s)


class Backoff:
    """Waits between probes: ``first``, then doubled after each failed probe up to ``cap``."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def reset(self) -> None:
        self._next = self.first

    def next(self) -> float:
        """The wait before the next probe (and double the one after it)."""
        wait, self._next = self._next, min(self._next * 2, self.cap)
        return wait


class LinkState:
    """Whether a device answers, as its coordinator reports it.

    ``up`` is what was last reported (a link-up or link-down fact); ``reported`` is None before the
    first report. ``failures`` counts failed polls in a row; the one that reaches ``down_after``
    takes the link down, once per outage (also before the first answer: a device that never
    answered since the start is reported offline rather than not at all)."""

    def __init__(self, down_after: int) -> None:
        self.down_after = down_after
        self.up = False
        self.reported: bool | None = None
        self.ever_up = False
        self.failures = 0
        self.last_seen_wall: float | None = None
        self.last_error: str | None = None

    def up_reason(self) -> str:
        """Why the link comes up now: ``connect`` the first time, ``recovered`` after an outage."""
        return "recovered" if self.ever_up else "connect"

    def answered(self, wall: float) -> None:
        """An answer (any answer): the failure streak ends."""
        self.failures = 0
        self.last_seen_wall = wall

    def failed(self, error: str | None = None) -> bool:
        """One more failed poll; True when it takes the link down (the caller reports that)."""
        self.failures += 1
        if error is not None:
            self.last_error = error
        if self.failures >= self.down_after and self.reported is not False:
            self.went_down()
            return True
        return False

    def came_up(self) -> None:
        self.up = self.ever_up = True
        self.reported = True
        self.failures = 0

    def went_down(self) -> None:
        self.up = False
        self.reported = False


class Staleness:
    """A value the device must keep moving (a heartbeat): stale once it stood still ``after`` seconds
    (0 or less: never stale)."""

    def __init__(self, after: float) -> None:
        self.after = after
        self.stale = False
        self._value: object = None
        self._since = 0.0

    def observe(self, value: object, mono: float) -> bool:
        """Note the value read at ``mono``; True when a stale value moves again."""
        if value is None or self.after <= 0:
            return False
        if value != self._value:
            moved, self.stale = self.stale, False
            self._value, self._since = value, mono
            return moved
        if not self.stale and mono - self._since >= self.after:
            self.stale = True
        return False

    def forget(self) -> None:
        """Start a new baseline with the next value (a device away for long is not stale)."""
        self._value = None


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class PollCoordinator(ABC):
    """Polls one device: ``start()`` spawns the task, ``stop()`` cancels it and waits (see the module
    docstring). A family's coordinator implements :meth:`_poll` and :meth:`_probe` and may override
    the hooks (:meth:`_before_turn`, :meth:`_pace`, :attr:`backing_off`, :meth:`_has_work`,
    :meth:`_stopped`)."""

    task_name: ClassVar[str] = "coordinator"

    def __init__(self, device: str, options: PollOptions, facts: FactSink | None = None) -> None:
        self.device = device
        self.options = options
        self.facts: Any = facts if facts is not None else asyncio.Queue(maxsize=1000)
        self.link = LinkState(options.link_down_after)
        self.backoff = Backoff(options.probe_interval, options.probe_max_interval)
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._waker: asyncio.Future[None] | None = None

    # ---- what the runtime and the CLI read ---------------------------------------------------------
    @property
    def link_up(self) -> bool:
        return self.link.up

    @property
    def last_seen_wall(self) -> float | None:
        return self.link.last_seen_wall

    @property
    def last_error(self) -> str | None:
        return self.link.last_error

    @last_error.setter
    def last_error(self, error: str | None) -> None:
        self.link.last_error = error

    @property
    def running(self) -> bool:
        return self._task is not None

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._running = True
            self._task = asyncio.create_task(self._run(), name=f"{self.task_name}:{self.device}")

    async def stop(self) -> None:
        self._running = False
        task, self._task = self._task, None
        await stop_task(task)
        await self._stopped()

    # ---- the run loop ------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await self._before_turn()
            try:
                answered = await (self._poll() if self.link.up else self._probe())
            except LinkLost:
                continue
            if answered or not self.backing_off:
                self.backoff.reset()
                wait = self._pace(started)
            else:
                wait = self.backoff.next()
            await self._sleep(wait)

    @abstractmethod
    async def _poll(self) -> bool:
        """One turn while the link is up; True if the device answered."""

    @abstractmethod
    async def _probe(self) -> bool:
        """One turn while the link is down; True if the device answered (the link is then up)."""

    async def _before_turn(self) -> None:  # noqa: B027 (a hook: nothing to do by default)
        """Before every turn (the SAS coordinator hands over its pending facts here)."""

    def _pace(self, started: float) -> float:
        """Seconds to wait after a turn that began at ``started`` (monotonic): the rest of the poll
        interval. A coordinator that paces itself inside its turns returns 0."""
        return self.options.poll_interval - (time.monotonic() - started)

    @property
    def backing_off(self) -> bool:
        """After a failed turn: wait the back-off (True) or the poll interval (False)."""
        return not self.link.up

    def _has_work(self) -> bool:
        """Something waits to be done now (a command): sleeps end at once."""
        return False

    async def _stopped(self) -> None:  # noqa: B027 (a hook: nothing to do by default)
        """After the task ended (close the connection, settle what is pending)."""

    # ---- sleeping, woken early ---------------------------------------------------------------------
    def _wake(self) -> None:
        if self._waker is not None and not self._waker.done():
            self._waker.set_result(None)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when :meth:`_wake` is called (work arrived)."""
        if seconds <= 0 or self._has_work():
            return
        loop = asyncio.get_running_loop()
        fut = self._waker = loop.create_future()
        handle = loop.call_later(seconds, _expire, fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._waker = None


__all__ = ["Backoff", "FactSink", "LinkLost", "LinkState", "PollCoordinator", "PollOptions", "Staleness"]
