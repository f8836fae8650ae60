"""The replicator: ships the outbox to HQ as signed batches and moves the ack watermark.

Delivery (design.md, "Delivery contract"):

* Batches are contiguous runs of the chain, in seq order, published with QoS 1 on
  ``hallsync/v1/halls/{hall}/batches``. A batch goes out when it is full (``batch_max`` events) or
  its first event has waited ``linger`` seconds, whichever comes first. A batch is also cut short
  before its payload would exceed ``protocols.sync.MAX_MESSAGE_BYTES`` (the rest goes in the next),
  since the broker disconnects a client sending more and central refuses it.
* At most ``window_events`` events are published and not yet acked (bounded memory at the broker
  and at HQ; a 1M-event backlog drains window by window).
* Only a verified ack (central's signature, this hall, the hash the outbox holds at that seq) moves
  the watermark; the outbox refuses anything else. No ack progress for ``ack_timeout`` seconds
  while events are in flight → publish the first unacked batch again (a probe: an HQ that is only
  slow then gets one duplicate batch, not the whole window again); if the next ack gets no further
  than the probe, or none comes within the next timeout, the window was lost: go back to the watermark
  and publish it all again (the timeout doubles up
  to ``ack_timeout_max`` while HQ stays silent, so a stopped HQ is not flooded; while HQ acks
  slowly through a queue, the timeout only grows, to twice the last silence, until caught up, so a
  busy HQ is not sent its queue again). Central treats what it already holds as a duplicate, so
  re-publishing is always safe; losing is never.
* While batches are unacked, a batch that is not full waits up to ``congested_linger`` for their ack
  (or to fill), so an HQ that falls behind gets fewer, larger batches.
* A resend request from central (a gap it saw) publishes exactly the requested range first.
* Every (re)connect starts again from the watermark: whatever was in flight on the old
  connection may be lost.
* Presence: a retained ``status`` (online) after every connect and the same message with
  ``online: false`` as the MQTT last will, both signed with the hall key (the will is built and signed
  at connect time); the session counter (persisted in the data dir) grows by one per connection so
  central can ignore a stale will arriving after a reconnect.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mqttlink import BrokerUrl, LinkDown, MqttLink, Received, Will
from protocols.logthrottle import WindowThrottle
from protocols.sync import (
    VERSION,
    Status,
    StoredEvent,
    SyncError,
    decode_ack,
    decode_resend,
    encode_batch_stored,
    encode_status,
    events_within_limit,
    parse_topic,
    topic,
)

from .outbox import Outbox
from .tasks import stop_task

log = structlog.get_logger("agent.replicator")


class CommandSink(Protocol):
    """Takes the messages of the hall's ``commands`` topic (see :class:`agent.commands.CommandHandler`)."""

    async def on_message(self, payload: bytes) -> None: ...

    async def on_connect(self) -> None: ...


def now_micros() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class ReplicatorConfig:
    batch_max: int = 5000
    linger: float = 0.25
    """Seconds a live batch waits for more events after its first one. HQ pays a fixed cost per batch
    (a signature to verify, an ack to sign, a savepoint), so a hall trickling events in 50 ms batches of
    ~5 costs HQ five times what 250 ms batches of ~25 do, while an event still reaches HQ well within
    a second (issue 13: 100 halls at 10,000 events/s). A backlog never waits: full batches go at once."""
    congested_linger: float = 2.0
    """Seconds (from its first event) a partial batch may wait while batches already sent are unacked.
    When HQ falls behind it acks late, and a hall that kept sending every ``linger`` would pile up ever
    more small batches, each of which costs HQ its fixed per-batch work: the overload feeds itself
    (issue 13: 100 halls live, 25-event batches, acks 25 s late). Waiting for the ack instead lets the
    batch grow with HQ's delay (ack-clocked, like Nagle's algorithm), so the per-batch cost shrinks
    exactly when HQ needs it. With a prompt HQ the ack comes long before the linger ends and nothing
    changes; a full batch never waits. 0: off. Never longer than half the ack timeout."""
    window_events: int = 50_000
    ack_timeout: float = 10.0
    ack_timeout_max: float = 120.0
    publish_timeout: float = 15.0
    max_publishes_in_flight: int = 4


async def _first_of(*aws: Any) -> None:
    """Wait until the first of ``aws`` finishes; cancel the rest (no task outlives this call)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SessionCounter:
    """A number that grows by one per MQTT connection and survives restarts (a file in the data dir)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.value = int(path.read_text().strip() or 0)
        except FileNotFoundError:
            self.value = 0
        except ValueError:
            log.warning("session_counter_unreadable", path=str(path))
            self.value = 0

    def next(self) -> int:
        """The next session. A failed save (a full disk) is logged and the number used anyway: the
        link must reconnect whatever the disk does (chaos seed 11: ENOSPC here killed the MQTT link for
        good and replication stopped until a restart). The next successful save catches the file up;
        only a restart before it could reuse a number, which costs a presence update, never an event."""
        self.value += 1
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with os.fdopen(os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o640), "w") as fh:
                fh.write(f"{self.value}\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("session_counter_not_saved", path=str(self.path), session=self.value, error=str(exc))
            with contextlib.suppress(OSError):
                tmp.unlink()
        return self.value


class Replicator:
    """Owns the MQTT link of one hall agent and the send loop; see the module docstring."""

    def __init__(self, outbox: Outbox, hall: str, key: Ed25519PrivateKey, central_key: Ed25519PublicKey,
                 url: BrokerUrl, *, data_dir: str | os.PathLike[str], config: ReplicatorConfig | None = None,
                 clock: Callable[[], int] = now_micros, client_id: str | None = None) -> None:
        self.outbox = outbox
        self.hall = hall
        self.key = key
        self.central_key = central_key
        self.config = config or ReplicatorConfig()
        self.clock = clock
        self.session = SessionCounter(Path(data_dir) / "mqtt-session")
        self._current_session = self.session.value
        self.link = MqttLink(url, client_id=client_id or f"hallsync-agent-{hall}", handler=self._on_message,
                             subscriptions=[topic(hall, "acks"), topic(hall, "resend"), topic(hall, "commands"),
                                            topic(hall, "standing")],
                             will=self._will,
                             on_connect=self._on_connect, publish_timeout=self.config.publish_timeout)
        self._sent_through = outbox.acked_through
        self._connection = 0  # bumps on every connect, so a send loop notices it must start over
        self._resends: collections.deque[tuple[int, int]] = collections.deque()
        self._kick = asyncio.Event()
        self._last_progress = time.monotonic()
        self._ack_timeout = self.config.ack_timeout
        self._tasks: list[asyncio.Task[Any]] = []
        self._publishing: set[asyncio.Task[bool]] = set()
        self._rewind = False
        self._probed: int | None = None
        """Through which seq the last probe re-sent the window's start, until an ack gets past it."""
        self.stats: dict[str, int] = collections.Counter()
        self._refusals = WindowThrottle()
        """Log lines of refused messages: 20 a minute per kind of refusal, the rest counted."""
        self.last_ack_at: int | None = None
        self.commands: CommandSink | None = None  # installed by the runtime before start()
        self.standing: Callable[[bytes], object] | None = None  # HQ's standing data (agent.standing), likewise

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self.link.run(), name="mqtt-link"),
                       asyncio.create_task(self._send_loop(), name="replicator-send")]

    async def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye (retained offline status), then close the link."""
        if self.link.connected:
            with contextlib.suppress(LinkDown):
                await self.link.publish(topic(self.hall, "status"), self._status(False), retain=True, timeout=timeout)
        for task in [*self._tasks, *self._publishing]:
            await stop_task(task)
        self._tasks = []
        self._publishing.clear()

    # -- presence -------------------------------------------------------------------------------------

    def _status(self, online: bool) -> bytes:
        return encode_status(Status(v=VERSION, hall=self.hall, online=online, session=self._current_session,
                                    at=self.clock()), self.key)

    def _will(self) -> Will:
        self._current_session = self.session.next()
        return Will(topic(self.hall, "status"), self._status(False), qos=1, retain=True)

    async def _on_connect(self) -> None:
        self._connection += 1
        self._rewind = False
        self._probed = None
        self._sent_through = self.outbox.acked_through
        self._last_progress = time.monotonic()
        self._kick.set()
        await self.link.publish(topic(self.hall, "status"), self._status(True), retain=True)
        if self.commands is not None:
            await self.commands.on_connect()
        log.info("replicator_online", hall=self.hall, session=self._current_session,
                 acked_through=self.outbox.acked_through, last_seq=self.outbox.last_seq)

    # -- acks and resend requests ---------------------------------------------------------------------

    async def _on_message(self, msg: Received) -> None:
        try:
            hall, kind = parse_topic(msg.topic)
            if hall != self.hall:
                raise SyncError(f"message for hall {hall!r} on the link of {self.hall!r}")
            if kind == "commands":
                if self.commands is None:
                    raise SyncError("command received but this agent has no command handler")
            elif kind == "acks":
                ack = decode_ack(msg.payload, self.central_key, expect_hall=self.hall)
            elif kind == "resend":
                request = decode_resend(msg.payload, self.central_key, expect_hall=self.hall)
            elif kind == "standing":
                if self.standing is None:
                    raise SyncError("standing data received but this agent has no handler for it")
            else:
                raise SyncError(f"unexpected topic kind {kind!r}")
        except SyncError as exc:
            self.stats["refused_messages"] += 1
            admitted, suppressed = self._refusals.admit(type(exc).__name__, self.clock())
            if admitted:  # a flood of forged messages must not flood the journal (issue 16); counted in stats
                log.error("central_message_refused", topic=msg.topic[:200], error=f"{type(exc).__name__}: {exc}",
                          similar_suppressed=suppressed)
            return
        if kind == "commands":
            await self.commands.on_message(msg.payload)  # type: ignore[union-attr]  # checked above
        elif kind == "standing":
            self.standing(msg.payload)  # type: ignore[misc]  # checked above
        elif kind == "acks":
            await self._ack(ack.acked_through_seq, ack.last_hash)
        else:
            self._resend(request.from_seq, request.to_seq, request.reason)

    async def _ack(self, through: int, last_hash: str) -> None:
        try:
            moved = await self.outbox.mark_acked(through, last_hash)
        except Exception as exc:  # not recorded: the events stay unacked and go out again
            log.error("ack_not_recorded", through=through, error=repr(exc))
            return
        self.stats["acks"] += 1
        if moved:
            if self._probed is not None and through > self._probed:
                self._probed = None   # HQ is past the probe: the window it was sent is arriving
            self.last_ack_at = self.clock()
            now = time.monotonic()
            silence, self._last_progress = now - self._last_progress, now
            self._ack_timeout = self._timeout_after_ack(silence)
            self._kick.set()

    def _timeout_after_ack(self, silence: float) -> float:
        """The ack timeout once an ack moved the watermark after ``silence`` seconds without one.

        Caught up (nothing in flight): the configured timeout. Still in flight: HQ is working through
        a queue and acks at its own pace (after an outage every hall catches up at once; 100 halls'
        5,000-event batches take it ~12 s to get through, so each hall hears an ack every ~12 s). Going
        back to 10 s then would time out before every ack and re-send the whole window each time, the
        duplicates loading HQ exactly while it is behind. So until caught up the timeout only grows: to
        twice the silence HQ just showed, and it keeps what a timeout doubled it to (the silence after
        a re-send is short only because the re-send restarted the clock). Never above ``ack_timeout_max``."""
        cfg = self.config
        if self._sent_through <= self.outbox.acked_through:
            return cfg.ack_timeout
        return min(cfg.ack_timeout_max, max(self._ack_timeout, cfg.ack_timeout, 2 * silence))

    def _resend(self, first: int, last: int, reason: str) -> None:
        acked = self.outbox.acked_through
        first = max(first, acked + 1)
        last = min(last, self.outbox.last_seq)
        if first > last:
            return
        self.stats["resend_requests"] += 1
        log.info("resend_requested", first=first, last=last, reason=reason)
        self._resends.append((first, last))
        self._kick.set()

    # -- sending --------------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            try:
                await self._send_some()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a storage hiccup: wait and go on; nothing is lost (all in the outbox)
                log.exception("replicator_error", error=repr(exc))
                await asyncio.sleep(1.0)

    async def _wait_kick(self, timeout: float) -> None:
        self._kick.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), timeout)

    async def _send_some(self) -> None:
        cfg = self.config
        if not self.link.connected:
            await self.link.wait_connected(1.0)
            return
        connection = self._connection
        acked = self.outbox.acked_through
        if self._rewind:
            self._rewind = False
            self._probed = None
            self._sent_through = acked
        self._sent_through = max(self._sent_through, acked)
        in_flight = self._sent_through - acked
        if in_flight and time.monotonic() - self._last_progress > self._ack_timeout:
            self.stats["ack_timeouts"] += 1
            probe = self._probed is None   # else: no ack got past the last probe, so the window is lost
            log.warning("ack_timeout", acked_through=acked, sent_through=self._sent_through,
                        waited=round(time.monotonic() - self._last_progress, 1),
                        then="probe" if probe else "resend_window")
            self._last_progress = time.monotonic()
            self._ack_timeout = min(self._ack_timeout * 2, cfg.ack_timeout_max)
            if probe:
                events = self._fit(await self.outbox.read_unacked_stored(acked, cfg.batch_max))
                if events and connection == self._connection:
                    self.stats["probes"] += 1
                    self._probed = events[-1].seq
                    await self._publish(events)
                return
            self._probed = None
            self._sent_through = acked
            return
        if self._resends:
            first, last = self._resends.popleft()
            first = max(first, acked + 1)
            seq = first - 1
            while seq < last and connection == self._connection:
                events = self._fit(await self.outbox.read_unacked_stored(seq, min(cfg.batch_max, last - seq)))
                if not events:
                    break
                await self._publish(events)
                seq = events[-1].seq
            return
        if in_flight >= cfg.window_events:
            await self._wait_kick(self._deadline())
            return
        room = min(cfg.batch_max, cfg.window_events - in_flight)
        events = await self.outbox.read_unacked_stored(self._sent_through, room)
        if not events:
            await _first_of(self.outbox.wait_for_events(self._sent_through, self._deadline()),
                            self._wait_kick(self._deadline()))
            return
        fitting = self._fit(events)
        if len(fitting) == len(events) < room and cfg.linger > 0:
            oldest = events[0].agent_time
            wait = cfg.linger - max(0.0, (self.clock() - oldest) / 1e6)
            if wait > 0 and await self.outbox.wait_for_events(self._sent_through + room - 1, wait):
                fitting = self._fit(await self.outbox.read_unacked_stored(self._sent_through, room))
            elif wait > 0:
                fitting = self._fit(await self.outbox.read_unacked_stored(self._sent_through, room))
            if fitting and len(fitting) < room and await self._congested_wait(fitting, room, connection):
                fitting = self._fit(await self.outbox.read_unacked_stored(self._sent_through, room))
            if self._rewind or self._resends or connection != self._connection:
                return   # what happened while this batch waited goes first (the next round)
        events = fitting
        if not events:  # the next event alone exceeds the limit (logged by _fit): it cannot go out
            await self._wait_kick(1.0)
            return
        if connection != self._connection:
            return
        if not in_flight:
            self._last_progress = time.monotonic()
        # Pipelined: up to max_publishes_in_flight batches await their PUBACK at once. They leave in
        # order (each task hands its batch to the client before its first await, tasks start in
        # creation order); if one fails, sending starts again from the last ack.
        task = asyncio.create_task(self._publish(events), name=f"publish-{events[0].seq}")
        self._sent_through = events[-1].seq
        self._publishing.add(task)
        task.add_done_callback(functools.partial(self._published, connection=connection))
        if len(self._publishing) >= cfg.max_publishes_in_flight:
            await asyncio.wait(set(self._publishing), return_when=asyncio.FIRST_COMPLETED)

    async def _congested_wait(self, batch: list[StoredEvent], room: int, connection: int) -> bool:
        """While earlier batches are unacked, hold the partial ``batch`` until they are acked, it could be
        full, or ``congested_linger`` has passed since its first event; True if it waited at all."""
        cfg = self.config
        cap = min(cfg.congested_linger, self._ack_timeout / 2)
        if cap <= cfg.linger:
            return False
        waited = False
        first = batch[0].agent_time
        while (self._sent_through > self.outbox.acked_through and connection == self._connection
               and not self._rewind and not self._resends):
            left = cap - max(0.0, (self.clock() - first) / 1e6)
            if left <= 0:
                break
            if not waited:
                self.stats["congested_waits"] += 1
            waited = True
            # an ack (or a rewind, a resend request, a reconnect) kicks; enough events to fill it end it too
            await _first_of(self.outbox.wait_for_events(self._sent_through + room - 1, left), self._wait_kick(left))
            if self.outbox.last_seq >= self._sent_through + room:
                break
        return waited

    def _fit(self, events: list[StoredEvent]) -> list[StoredEvent]:
        """The leading events whose batch stays within ``MAX_MESSAGE_BYTES``; the rest wait for the next.

        An event too big to go out even alone (no normalizer makes one: the largest, a snapshot of
        every meter code, is ~10 KB) stops replication at its seq rather than being skipped, since
        the chain must stay whole; it is logged as an error each time."""
        count = events_within_limit(events)
        if count == 0 and events:
            self.stats["oversize_events"] += 1
            log.error("event_too_large_to_send", seq=events[0].seq, bytes=len(events[0].body),
                      note="replication is stuck at this seq; the event stays in the outbox")
        elif count < len(events):
            self.stats["batches_cut_by_size"] += 1
        return events[:count]

    def _published(self, task: asyncio.Task[bool], connection: int) -> None:
        self._publishing.discard(task)
        if task.cancelled() or task.exception() is not None or not task.result():
            if connection == self._connection:
                self._rewind = True
                self._kick.set()

    def _deadline(self) -> float:
        """Seconds until the ack timeout would fire (at least a little, at most 1 s)."""
        if self._sent_through <= self.outbox.acked_through:
            return 1.0
        left = self._ack_timeout - (time.monotonic() - self._last_progress)
        return min(1.0, max(0.05, left))

    async def _publish(self, events: list[StoredEvent]) -> bool:
        payload = encode_batch_stored(events, self.hall, self.key, created_at=self.clock())
        try:
            await self.link.publish(topic(self.hall, "batches"), payload, qos=1)
        except LinkDown as exc:
            self.stats["publish_failures"] += 1
            log.warning("batch_not_published", first_seq=events[0].seq, last_seq=events[-1].seq, error=str(exc))
            return False
        self.stats["batches"] += 1
        self.stats["events_sent"] += len(events)
        return True

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.link.connected,
            "broker": str(self.link.url),
            "session": self._current_session,
            "sent_through": self._sent_through,
            "acked_through": self.outbox.acked_through,
            "last_ack_at": self.last_ack_at,
            "ack_timeout_s": self._ack_timeout,
            "link": {"connects": self.link.stats.connects, "disconnects": self.link.stats.disconnects,
                     "connect_failures": self.link.stats.connect_failures, "last_error": self.link.stats.last_error},
            **dict(self.stats),
        }
