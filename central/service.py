"""Central's MQTT side: receive batches and presence, run the ingestor, publish acks and resends.

One :class:`IngestService` per process. It subscribes to every hall's batches through a shared
subscription (``$share/{group}/hallsync/v1/halls/+/batches``), so several central processes on one
database split the load; the ingestor and the store are safe for that (per-hall decisions happen
inside the store's transaction, out-of-order batches are buffered).

Isolation between halls: the link's single handler only parses the topic and hands the message to
that hall's queue; one worker task per hall stores its batches in order, so a slow or abusive hall
delays only itself. A queue that is full drops the message with a log line; that is safe because
nothing was acked: the agent publishes it again after its ack timeout.

Size: a payload above ``MAX_MESSAGE_BYTES`` on any topic is refused by its length before anything
decodes it or queues it (a throttled ``format_error`` row; nothing acked, nothing stored). The broker's
``max_packet_size`` normally stops it first; this holds if a broker was configured without it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import structlog

from central.repos import Repositories
from central.repos.ingest import LogEntry, LogKind
from mqttlink import BrokerUrl, LinkDown, MqttLink, Received
from protocols.sync import (
    MAX_SESSION_JUMP,
    SyncError,
    decode_command_result,
    decode_status,
    parse_topic,
    peek_seq_range,
    public_key_from_pem,
    shared_subscription,
    subscription,
)

from .commands import RESULT_TO_STATUS, CommandNotPublished, result_detail
from .ingest import UNREGISTERED, Ingestor, IngestOutcome, Verified
from .timeutil import now_micros

log = structlog.get_logger("central.service")


class BatchMetrics(Protocol):
    """What the service tells its metrics (:class:`central.metrics.CentralMetrics`) once per batch."""

    def batch(self, outcome: IngestOutcome, prepared: IngestOutcome | Verified, seconds: float) -> None: ...

_FORMAT_ERRORS = "_format"  # the queue for messages whose topic names no valid hall


HOLDER_ANSWER_S: Final = 1.0
"""How long a worker whose gap's grace is over waits for another worker to say it holds the missing
batch (:meth:`central.repos.ingest.IngestRepository.ask_holders`) before asking the hall to resend: long
enough for a loaded process to answer (its event loop and its connection pool are busy then); a gap
nobody holds costs this much more before the request."""

RECHECK_FALLBACK_S: Final = 0.2
"""The longest a worker waits for a hall's stored end to move before it looks again itself: the stores
wake it when the end moves (LISTEN/NOTIFY on PostgreSQL), so this bounds only a lost wake-up."""


class _HallQueue(asyncio.Queue[Received]):
    """A hall's received batches, which a worker can also list (asyncio.Queue's documented subclass
    hooks, as its LifoQueue uses) to answer whether it holds a given seq."""

    def _init(self, maxsize: int) -> None:
        self._queue: collections.deque[Received] = collections.deque()

    def listed(self) -> list[Received]:
        return list(self._queue)


AFTER_RESEND_S: Final = 30.0
"""How long a hall's held batches are re-read for after central asked the hall to resend a gap (see
:meth:`IngestService._recheck`); beyond it, the hall's own ack timeout sends them again."""


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    share_group: str | None = "central"
    """None: plain subscriptions, for a broker without ``$share`` (the demo's embedded amqtt); only one
    central process may then serve the broker, or each batch would be ingested by every process."""
    client_id: str = "hallsync-central"
    persistent_session: bool = True
    """True (``serve --role all``, one process): the broker keeps the subscription and queues batches
    while central restarts. False for ``--role ingest`` workers on the shared subscription: Mosquitto
    (2.0, its issue #1747) goes on handing a dead member of a ``$share`` group with a persistent session
    its share of every hall's batches until it returns, so a SIGKILLed worker's halls would not move to
    the others; with a clean session the broker drops the member when its connection ends. What was in
    flight to the dead worker is not lost: nothing of it was acked, so the survivors ask for it (gap) or
    the agent sends it again (ack timeout)."""
    ingest: bool = True
    """False: the link only publishes (commands, standing data) and subscribes to nothing — the link of
    an ``api`` or ``monitor`` process, which leaves batches, status and results to the ingest processes."""
    per_hall_queue: int = 256
    per_hall_bytes: int = 32 * 1024 * 1024
    """A hall's queued payloads beyond this are dropped (unacked, so the agent sends them again):
    memory stays bounded even if an agent floods or central falls behind."""
    idle_worker_seconds: float = 60.0
    max_workers: int = 10_000
    prepare_ahead: int = 2
    max_inflight: int = 1000
    """Acks and resend requests awaiting the broker's PUBACK at once. Every hall's worker waits for its
    ack's PUBACK before committing its next batch, so this must exceed the number of halls sending at
    once: at 20 (the link's default, right for one agent) 100 live halls queued behind each other for
    the broker's round trips and central sustained a third of what they offered."""
    """Batches of one hall verified at once ahead of the one committing (see ``_worker``)."""


class IngestService:
    """See the module docstring."""

    def __init__(self, store: Repositories, ingestor: Ingestor, url: BrokerUrl,
                 config: ServiceConfig | None = None) -> None:
        self.store = store
        self.ingestor = ingestor
        self.config = config or ServiceConfig()
        self.link = MqttLink(url, client_id=self.config.client_id, handler=self._on_message,
                             clean_session=not self.config.persistent_session,
                             max_inflight=self.config.max_inflight,
                             subscriptions=[self._subscription("batches"), self._subscription("command-results"),
                                            subscription("status")] if self.config.ingest else [])
        self._queues: dict[str, _HallQueue] = {}
        self._ahead: dict[str, collections.deque[tuple[asyncio.Task[IngestOutcome | Verified], float, bytes]]] = {}
        """Per hall: the batches its worker took from the queue, being verified or committed (in order)."""
        self._unserve: Callable[[], None] | None = None
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._rechecks: dict[str, asyncio.Task[None]] = {}
        """Per hall with buffered batches behind a gap: the task that re-reads the stored end (gap_grace)."""
        self._bytes: dict[str, int] = {}
        self._link_task: asyncio.Task[None] | None = None
        self.stats: collections.Counter[str] = collections.Counter()
        self.metrics: BatchMetrics | None = None
        """Set by ``serve``: told once per batch (never per event) what the batch came to."""
        self.on_online: Callable[[str], None] | None = None
        """Set by ``serve``: called when a hall's agent comes online (it is sent its standing data)."""

    def _subscription(self, kind: str) -> str:
        group = self.config.share_group
        return subscription(kind) if group is None else shared_subscription(group, kind)

    async def start(self) -> None:
        if self.config.ingest:
            self._unserve = await self.store.ingest.answer_holders(self._holds)
        self._link_task = asyncio.create_task(self.link.run(), name="central-mqtt")

    async def stop(self, timeout: float = 10.0) -> None:
        """Cancel the link and every worker, again until they are done (bounded), so stop never hangs."""
        unserve, self._unserve = self._unserve, None
        if unserve is not None:
            unserve()
        tasks = {t for t in (self._link_task, *self._workers.values(), *self._rechecks.values()) if t is not None}
        deadline = asyncio.get_running_loop().time() + timeout
        while tasks:
            for task in tasks:
                task.cancel()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.error("ingest_tasks_did_not_stop", tasks=sorted(t.get_name() for t in tasks))
                break
            _, tasks = await asyncio.wait(tasks, timeout=min(0.2, left))
        self._workers.clear()
        self._rechecks.clear()
        self._queues.clear()
        self._link_task = None

    # -- receiving ------------------------------------------------------------------------------------

    async def _on_message(self, msg: Received) -> None:
        try:
            hall, kind = parse_topic(msg.topic)
        except SyncError:
            hall, kind = _FORMAT_ERRORS, "batches"
        if (oversize := self.ingestor.oversize(msg.payload)) is not None:
            self.stats["oversize"] += 1
            await self.ingestor.log_throttled("format_error", None if hall == _FORMAT_ERRORS else hall,
                                            f"{kind}: {oversize} (topic {msg.topic[:200]!r})")
            return
        if kind == "status":
            await self._presence(hall, msg)
            return
        if kind == "command-results":
            await self._command_result(hall, msg)
            return
        queue = self._queues.get(hall)
        if queue is None:
            if len(self._workers) >= self.config.max_workers:
                hall = _FORMAT_ERRORS  # more distinct halls than any operator has: garbage; keep it contained
            queue = self._queues.get(hall)
            if queue is None:
                queue = self._queues[hall] = _HallQueue(self.config.per_hall_queue)
                self._workers[hall] = asyncio.create_task(self._worker(hall, queue), name=f"ingest-{hall}")
        queued = self._bytes.get(hall, 0)
        if queued + len(msg.payload) > self.config.per_hall_bytes and not queue.empty():
            self.stats["dropped_overload"] += 1
            log.warning("ingest_queue_full", hall=hall, dropped_topic=msg.topic, queued_bytes=queued,
                        note="not acked; the agent publishes it again")
            return
        try:
            queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.stats["dropped_overload"] += 1
            log.warning("ingest_queue_full", hall=hall, dropped_topic=msg.topic,
                        note="not acked; the agent publishes it again")
            return
        self._bytes[hall] = queued + len(msg.payload)

    async def _presence(self, hall: str, msg: Received) -> None:
        """A hall's retained status: verified with the hall's registered key, then ordered by session.

        Refused, counted and logged (throttled per hall): a status of an unregistered hall, one that does
        not verify (unsigned or forged: ``rejected``; unreadable: ``format_error``), and one whose
        session jumps more than :data:`MAX_SESSION_JUMP` past the last accepted one (``rejected``: a
        forged or broken counter must not make every later status of the real agent look stale).
        """
        if not msg.payload:  # a cleared retained message
            return
        try:
            record = await self.store.halls.get_hall(hall)
        except Exception as exc:
            self.stats["presence_store_errors"] += 1
            log.error("presence_not_stored", hall=hall, error=repr(exc))
            return
        if record is None:
            await self._refuse_status("rejected", hall, f"status from hall {hall!r}, which is not registered",
                                      source=UNREGISTERED)
            return
        if record.state != "active":
            await self._refuse_status("rejected", hall, f"status from hall {hall!r}, which is {record.state}")
            return
        try:
            status = decode_status(msg.payload, public_key_from_pem(record.public_key_pem.encode()),
                                   expect_hall=hall)
        except SyncError as exc:
            kind: LogKind = "rejected" if exc.log_kind == "rejected" else "format_error"
            await self._refuse_status(kind, hall, f"status: {type(exc).__name__}: {exc}")
            return
        if record.session is not None and status.session - record.session > MAX_SESSION_JUMP:
            await self._refuse_status("rejected", hall, f"status: session {status.session} is more than "
                                                        f"{MAX_SESSION_JUMP} past the last accepted "
                                                        f"{record.session}")
            return
        try:
            changed = await self.store.halls.set_presence(hall, online=status.online, session=status.session,
                                                          at=status.at)
        except Exception as exc:
            self.stats["presence_store_errors"] += 1
            log.error("presence_not_stored", hall=hall, error=repr(exc))
            return
        if changed and status.online and self.on_online is not None:
            self.on_online(hall)
        if changed:
            log.info("hall_presence", hall=hall, online=status.online, session=status.session)
            with contextlib.suppress(Exception):
                await self.store.ingest.log([LogEntry(kind="connection", hall=hall, time=now_micros(),
                                               detail=f"agent {'online' if status.online else 'offline'} "
                                                      f"(session {status.session})")])

    async def _refuse_status(self, kind: LogKind, hall: str, detail: str, *, source: str | None = "") -> None:
        self.stats["bad_status"] += 1
        if not await self.ingestor.log_throttled(kind, hall, detail, source=source):
            self.stats["status_log_suppressed"] += 1

    async def _log_format_error(self, hall: str | None, detail: str) -> None:
        await self._log("format_error", hall, detail)

    async def _log(self, kind: LogKind, hall: str | None, detail: str, *, source: str | None = "") -> None:
        """Through the ingestor's throttle: a flood of bad status or command-result messages costs a
        bounded number of rows per source and minute, like bad batches (issue 16)."""
        await self.ingestor.log_throttled(kind, hall, detail, source=source)

    # -- commands ---------------------------------------------------------------------------------------

    async def publish_retained(self, topic_name: str, payload: bytes) -> None:
        """QoS 1, retained (standing data); :class:`LinkDown` when offline."""
        await self.link.publish(topic_name, payload, qos=1, retain=True)

    async def publish_command(self, topic_name: str, payload: bytes) -> None:
        """The API's command publisher: QoS 1 through this link; :class:`CommandNotPublished` when offline."""
        if not self.link.connected:
            raise CommandNotPublished("central is not connected to the MQTT broker")
        await self.link.publish(topic_name, payload, qos=1)

    async def _command_result(self, hall: str, msg: Received) -> None:
        self.stats["command_results"] += 1
        if hall == _FORMAT_ERRORS:
            self.stats["bad_command_results"] += 1
            await self._log_format_error(None, f"command result on a bad topic {msg.topic[:200]!r}")
            return
        try:
            record = await self.store.halls.get_hall(hall)
            if record is None:
                self.stats["bad_command_results"] += 1
                await self._log("rejected", hall, f"command result from hall {hall!r}, which is not registered",
                                source=UNREGISTERED)
                return
            if record.state == "removed":   # a disabled hall's results still close its commands
                self.stats["bad_command_results"] += 1
                await self._log("rejected", hall, f"command result from hall {hall!r}, which is removed")
                return
            try:
                result = decode_command_result(msg.payload, public_key_from_pem(record.public_key_pem.encode()),
                                               expect_hall=hall)
            except SyncError as exc:
                self.stats["bad_command_results"] += 1
                kind: LogKind = "rejected" if exc.log_kind == "rejected" else "format_error"
                await self._log(kind, hall, f"command result: {type(exc).__name__}: {exc}")
                return
            command = await self.store.commands.command(result.id)
            if command is None or command.hall != hall:
                self.stats["bad_command_results"] += 1
                await self._log("rejected", hall, f"command result for {result.id}, which is not a command of {hall}")
                return
            status = RESULT_TO_STATUS[result.status]
            changed = await self.store.commands.update_command(result.id, status, result_detail(result.status,
                                                                                                result.detail),
                                                      now_micros())
            if not changed:
                current = await self.store.commands.command(result.id)
                await self._log("duplicate", hall, f"command result {result.status} for {result.id} ignored: the "
                                                   f"command is {current.status if current else 'gone'}")
            else:
                log.info("command_result", hall=hall, command=result.id, status=status)
        except Exception as exc:  # a store failure must not take the link down; the log says what happened
            self.stats["command_result_store_errors"] += 1
            log.error("command_result_not_stored", hall=hall, error=repr(exc))

    # -- one worker per hall --------------------------------------------------------------------------

    async def _worker(self, hall: str, queue: _HallQueue) -> None:
        """Store this hall's batches in arrival order; verify the next ones while the current one commits.

        Up to ``prepare_ahead`` batches are being verified at once (in the verify pool's child, or in
        threads), so the verifier never waits for the commit and the commit never waits for the
        verifier; results are committed strictly in the order the batches arrived."""
        ahead = self._ahead[hall] = collections.deque()

        def top_up() -> None:
            while len(ahead) < self.config.prepare_ahead + 1 and not queue.empty():
                msg = queue.get_nowait()
                self._taken(hall, msg)
                ahead.append((asyncio.create_task(self.ingestor.prepare(msg.topic, msg.payload)), time.monotonic(),
                              msg.payload))

        try:
            while True:
                if not ahead:
                    try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                        async with asyncio.timeout(self.config.idle_worker_seconds):
                            msg = await queue.get()
                    except TimeoutError:
                        if queue.empty():
                            return
                        continue
                    self._taken(hall, msg)
                    ahead.append((asyncio.create_task(self.ingestor.prepare(msg.topic, msg.payload)),
                                  time.monotonic(), msg.payload))
                top_up()
                preparing, started, _ = ahead[0]   # stays listed (held) until committed
                prepared = await preparing
                top_up()
                try:
                    outcome = await self.ingestor.commit(prepared)
                finally:
                    ahead.popleft()
                self.stats[outcome.status] += 1
                self.stats["events_stored"] += outcome.stored
                if self.metrics is not None:
                    self.metrics.batch(outcome, prepared, time.monotonic() - started)
                await self._publish_replies(hall, outcome)
                if outcome.recheck and hall not in self._rechecks:
                    self._rechecks[hall] = asyncio.create_task(self._recheck(hall, outcome.chain_end),
                                                               name=f"ingest-recheck-{hall}")
        finally:
            for task, _, _ in ahead:
                task.cancel()
            await asyncio.gather(*(task for task, _, _ in ahead), return_exceptions=True)
            if self._workers.get(hall) is asyncio.current_task():
                del self._workers[hall]
                self._queues.pop(hall, None)
                self._bytes.pop(hall, None)
                self._ahead.pop(hall, None)

    def _holds(self, hall: str, seq: int) -> bool:
        """Whether this process has a batch of ``hall`` covering ``seq`` received and not yet stored (being
        verified, committed or queued): another worker asks before it requests a resend of that seq.
        Batches buffered behind a gap do not count (their holder is waiting too)."""
        for task, _, payload in self._ahead.get(hall, ()):
            prepared = task.result() if task.done() and not task.cancelled() and task.exception() is None else None
            if isinstance(prepared, Verified):
                span: tuple[int, int] | None = (prepared.header.first_seq, prepared.header.last_seq)
            elif isinstance(prepared, IngestOutcome):
                continue   # refused: it will store nothing
            else:
                span = peek_seq_range(payload)
            if span is not None and span[0] <= seq <= span[1]:
                return True
        queue = self._queues.get(hall)
        for msg in queue.listed() if queue is not None else ():
            span = peek_seq_range(msg.payload)
            if span is not None and span[0] <= seq <= span[1]:
                return True
        return False

    async def _publish_replies(self, hall: str, outcome: IngestOutcome) -> None:
        for out in outcome.publish:
            if out.topic.endswith("/resend"):
                self.stats["resends_asked"] += 1
            try:
                await self.link.publish(out.topic, out.payload, qos=1)
            except LinkDown as exc:  # the agent times out and publishes again; we ack the duplicate
                self.stats["publish_failures"] += 1
                log.warning("reply_not_published", hall=hall, topic=out.topic, error=str(exc))

    async def _recheck(self, hall: str, end: int | None) -> None:
        """While batches of ``hall`` wait behind a gap, re-read the stored end each time it moves (another
        worker is usually committing the missing batch); after ``gap_grace`` without the end moving, ask
        the hall for it.

        The grace counts from the end's last move, not from the first look: with several workers and a
        backlog, the batches before ours are stored one after another by the others (the chain is
        serial), which can take longer than the grace although nothing is missing; asking then only makes
        the hall send them twice. After the request, the re-reading goes on for ``AFTER_RESEND_S``: the
        resent range may reach another worker, and only re-reading stores the batches held here (else
        they wait for the hall's ack timeout to be sent again).

        Between looks the worker waits for the store to say the end moved (another process's commit
        wakes it through the database), at most :data:`RECHECK_FALLBACK_S`. Before the request, it asks
        the other workers whether one holds the missing batch in hand (its queue is long when HQ is
        loaded): then the grace starts again instead (issue 14: a gap is never declared because
        another worker holds the previous batch)."""
        grace = self.ingestor.gap_grace
        step = min(RECHECK_FALLBACK_S, grace / 4)
        deadline = time.monotonic() + grace
        asked_at: float | None = None
        try:
            while True:
                try:
                    if end is None:
                        await asyncio.sleep(step)
                    else:
                        await self.store.ingest.wait_chain_moved(hall, end, step)
                except Exception as exc:   # the store is failing: the look below says so; wait as before
                    log.warning("chain_end_wait_failed", hall=hall, error=repr(exc))
                    await asyncio.sleep(step)
                now = time.monotonic()
                final = asked_at is None and now >= deadline
                if final and end is not None and await self.store.ingest.ask_holders(hall, end + 1,
                                                                                      HOLDER_ANSWER_S):
                    self.stats["gap_held_by_peer"] += 1
                    log.info("gap_held_by_another_worker", hall=hall, missing_from=end + 1,
                             note="no resend request: waiting for it to be stored")
                    deadline, final = time.monotonic() + grace, False
                outcome = await self.ingestor.recheck(hall, final=final)
                self.stats["events_stored"] += outcome.stored
                if outcome.stored:
                    self.stats["stored_after_recheck"] += 1
                await self._publish_replies(hall, outcome)
                if final:
                    asked_at = now
                    if not outcome.buffered:   # nothing held any more (or the store failed: no more looks)
                        return
                elif not outcome.recheck:
                    return
                elif asked_at is not None and now - asked_at >= AFTER_RESEND_S:
                    return
                if outcome.chain_end is not None and outcome.chain_end != end:
                    if end is not None and asked_at is None:
                        deadline = now + grace   # another worker moved the end: the gap is being closed
                    end = outcome.chain_end
        finally:
            if self._rechecks.get(hall) is asyncio.current_task():
                del self._rechecks[hall]

    def _taken(self, hall: str, msg: Received) -> None:
        self._bytes[hall] = max(0, self._bytes.get(hall, 0) - len(msg.payload))

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"connected": self.link.connected, "broker": str(self.link.url),
                               "workers": len(self._workers), **dict(self.stats)}
        group = getattr(self.store.database, "group_commit", None)   # SQLite's (central.store.group_commit)
        if group is not None:
            out.update(group_commits=group.stats.commits, group_units=group.stats.units,
                       largest_group=group.stats.largest_group)
        return out
