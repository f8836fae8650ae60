"""Central's side of standing data: each hall's signed document, published retained on change and on
the agent's (re)connect, and a periodic check that catches changes made by another process (the CLI's
``halls set`` writes the database while ``serve`` runs).

Publishing is idempotent: the agent keeps the newest version it verified and ignores the same version
again, so sending it on every reconnect and after every check that finds a difference costs one small
message. A publish that fails (broker down) is retried by the next check.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.repos import Repositories
from central.repos.halls import HallRecord
from protocols.sync import VERSION, topic
from protocols.sync.standing import StandingData, encode_standing

from .timeutil import Clock, now_micros

log = structlog.get_logger("central.standing")

Publish = Callable[[str, bytes], Awaitable[None]]
"""(topic, payload) → published retained at QoS 1, or raises."""

CHECK_SECONDS: Final = 10.0


def document(record: HallRecord, issued_at: int) -> StandingData:
    return StandingData(v=VERSION, hall=record.id, version=record.settings_version, issued_at=issued_at,
                        timezone=record.timezone, gaming_day_start=record.gaming_day_start)


class StandingPublisher:
    """Owned by ``serve``: :meth:`start` after the MQTT link, :meth:`stop` before it."""

    def __init__(self, store: Repositories, key: Ed25519PrivateKey, publish: Publish, *, clock: Clock = now_micros,
                 interval: float = CHECK_SECONDS) -> None:
        self.store = store
        self.key = key
        self._publish = publish
        self.clock = clock
        self.interval = interval
        self.published: dict[str, int] = {}
        """Hall → the version last published by this process."""
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def wake(self, hall: str) -> None:
        """The hall's agent (re)connected: send its document again soon (from the loop, so the MQTT
        handler that calls this never waits for a publish)."""
        self.published.pop(hall, None)
        self._wake.set()

    async def publish(self, hall: str) -> bool:
        """Publish the hall's current document; False when the hall is unknown or the broker refused."""
        record = await self.store.halls.get_hall(hall)
        if record is None:
            return False
        payload = encode_standing(document(record, self.clock()), self.key)
        try:
            await self._publish(topic(hall, "standing"), payload)
        except Exception as exc:   # the next check tries again
            log.warning("standing_not_published", hall=hall, version=record.settings_version, error=repr(exc))
            return False
        self.published[hall] = record.settings_version
        log.info("standing_published", hall=hall, version=record.settings_version, timezone=record.timezone,
                 gaming_day_start=record.gaming_day_start)
        return True

    async def check(self) -> int:
        """Publish every hall whose version differs from what this process last published."""
        sent = 0
        for record in await self.store.halls.halls():
            if self.published.get(record.id) != record.settings_version and await self.publish(record.id):
                sent += 1
        return sent

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="central-standing")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
            except Exception as exc:   # a store hiccup must not end the loop
                log.error("standing_check_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
