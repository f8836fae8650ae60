"""The durable outbox: numbers, seals and group-commits events; serves the replicator; fails closed.

Threading: sqlite3 has no async API and its calls block, and a blocking ``fsync`` on the event loop
would stall the serial pollers' 20 ms reply windows. So every database call runs on ONE dedicated
worker thread owned by the outbox (the only thread in it), which also owns the only connection;
everything else (queueing, lingering, sealing, hooks) is asyncio on the caller's loop.

Order and durability: :meth:`Outbox.append` seals its drafts at once, on the loop, with the next
gap-free seqs and the chain's current tail hash, and enqueues them; the single writer task commits
the queue's head in order, so seq order, queue order and commit order are the same. ``append``
returns only after the transaction holding its events has committed (``synchronous=FULL``).
Appends arriving within ``linger`` share one transaction (group commit): one fsync for up to
``max_group`` events.

Fail closed: when a commit fails (disk full, I/O error, corrupt file, a stalled disk) the outbox
goes ``failed``, keeps the sealed, uncommitted events in memory (at most ``max_pending``), tells
the agent which devices have events waiting (``on_fail_closed``; the agent locks those machines
and raises an alarm), and retries every ``retry_interval`` seconds, reopening the file each time.
When a retry commits, the held events land in order with no gap and ``on_recovered`` fires.
Nothing accepted is ever dropped; beyond the memory bound ``append`` raises
:class:`OutboxUnavailable` so the caller stops producing events.

Sending: the newest committed events are also kept on the loop, as the bytes the store wrote
(:data:`RECENT_EVENTS`). Live, the replicator asks for events milliseconds after their commit; those
pages come from memory, with no trip to the worker thread and no read of the file (in
``bench/many_halls.py``, 100 halls' outboxes on 2 cores, that trip was a commit's worth of thread
hand-offs per batch). Only a commit that returned fills the memory and a failed one empties it, so
it always ends at the file's last row; a backlog older than it is read from the file.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TypeVar

import structlog

from protocols.sync import Event, StoredEvent, UnsealedEvent, seal_many

from .drafts import DraftLike
from .errors import OutboxUnavailable, failure_reason
from .eventids import new_event_ids
from .store import AckOutcome, ChainState, OutboxStore

log = structlog.get_logger("agent.outbox")

State = Literal["stopped", "ok", "failed"]
FailHook = Callable[[str, frozenset[str]], object]
RecoverHook = Callable[[], object]
T = TypeVar("T")

SEAL_SLICE = 200
"""Drafts sealed between two yields to the loop (~2 ms of CPU), so a large append cannot hold up the
serial pollers sharing the loop."""

RECENT_EVENTS = 4096
"""How many of the newest committed events the outbox keeps in memory for sending (about 2 MB)."""

PRUNE_CHUNK = 10_000
"""Rows deleted per prune transaction, so appends interleave with a long prune."""
PRUNE_MAX_CHUNKS = 1_000
"""Bound on one prune call (10M rows); the next one carries on."""


@dataclass(eq=False, slots=True)
class _Request:
    """One append call: its sealed events (all committed together) and the caller's future."""

    events: list[Event]
    future: asyncio.Future[list[Event]]
    devices: frozenset[str] = field(default_factory=frozenset)
    checkpoints: Mapping[str, bytes] | None = None


class Outbox:
    """The agent's append-only, hash-chained, durable event log (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        hall: str,
        *,
        linger: float = 0.005,
        max_group: int = 1000,
        max_pending: int = 20_000,
        retention_seconds: float = 7 * 86400,
        retention_max_bytes: int | None = None,
        retry_interval: float = 5.0,
        commit_timeout: float = 30.0,
        call_timeout: float = 30.0,
        on_fail_closed: FailHook | None = None,
        on_recovered: RecoverHook | None = None,
    ) -> None:
        if max_group < 1 or max_pending < max_group:
            raise ValueError("need 1 <= max_group <= max_pending")
        self.hall = hall
        self.linger = linger
        self.max_group = max_group
        self.max_pending = max_pending
        self.retention_seconds = retention_seconds
        self.retention_max_bytes = retention_max_bytes
        """Size cap on the database's pages in use: beyond it the oldest *acked* events go even when
        younger than ``retention_seconds`` (None: age only). Unacked events are never pruned, so a
        long HQ outage can take the file past it."""
        self._last_prune: dict[str, Any] | None = None
        self.retry_interval = retry_interval
        self.commit_timeout = commit_timeout
        self.call_timeout = call_timeout
        self.on_fail_closed = on_fail_closed
        self.on_recovered = on_recovered
        self._store = OutboxStore(path, hall)
        self._executor: ThreadPoolExecutor | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queue: collections.deque[_Request] = collections.deque()
        self._recent: collections.deque[StoredEvent] = collections.deque(maxlen=RECENT_EVENTS)   # the file's end
        self._pending = 0  # events sealed and queued, not yet committed
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()  # set by stop(): commit now, without lingering or waiting to retry
        self._changed = asyncio.Condition()
        self._state: State = "stopped"
        self._stopping = False
        self._reason: str | None = None
        self._reported: set[str] = set()  # devices already named to on_fail_closed in this failure
        self._hook_tasks: set[asyncio.Task[Any]] = set()
        self._seal_lock = asyncio.Lock()  # FIFO: appends are numbered and queued in call order
        self._next_seq = 1
        self._tail_hash = ""

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database and start the writer; raises :class:`OutboxUnavailable` if it cannot.

        An outbox that cannot even open has no chain to continue, so it refuses to start; the
        agent must then keep every machine locked and raise an alarm.
        """
        if self._state != "stopped":
            raise RuntimeError("outbox already started")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-sqlite")
        self._recent.clear()   # a restarted outbox reads what it sends from its file until it commits
        try:
            state = await self._call(self._store.open)
        except Exception as exc:
            self._executor.shutdown(wait=False)
            self._executor = None
            reason = failure_reason(exc)
            log.error("outbox_open_failed", path=str(self._store.path), reason=reason)
            raise OutboxUnavailable(f"cannot open outbox {self._store.path}: {reason}") from exc
        self._next_seq, self._tail_hash = state.last_seq + 1, state.last_hash
        self._state, self._stopping = "ok", False
        self._flush.clear()
        self._writer = asyncio.create_task(self._write_loop(), name="outbox-writer")
        log.info("outbox_started", path=str(self._store.path), hall=self.hall, last_seq=state.last_seq,
                 acked_through=state.acked_through)

    async def stop(self, timeout: float = 10.0) -> None:
        """Commit everything queued (no linger), then close. Idempotent.

        If the queue cannot be flushed within ``timeout`` (the outbox is failed), the appends still
        waiting get :class:`OutboxUnavailable`: they never returned, so no durability was promised.
        (If the disk was hung rather than full, a commit already handed to it may still land later;
        the next start reads the chain from the file, so it continues correctly either way.)
        """
        if self._state == "stopped" or self._writer is None:
            return
        self._stopping = True
        self._wake.set()
        self._flush.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), timeout)
        except TimeoutError:
            log.error("outbox_stop_unflushed", events=self._pending, reason=self._reason)
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        for request in self._queue:
            if not request.future.done():
                request.future.set_exception(OutboxUnavailable("outbox stopped before these events committed"))
        self._queue.clear()
        self._pending = 0
        try:
            await self._call(self._store.close)
        except Exception as exc:  # closing can only fail on a broken file; nothing is pending any more
            log.warning("outbox_close_failed", reason=failure_reason(exc))
        assert self._executor is not None
        self._executor.shutdown(wait=False)
        self._executor, self._writer, self._state = None, None, "stopped"
        await self._notify()
        log.info("outbox_stopped", last_seq=self._store.state.last_seq)

    async def __aenter__(self) -> Outbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- appending ----------------------------------------------------------------------------------

    async def append(self, drafts: Iterable[DraftLike], *,
                     checkpoints: Mapping[str, bytes] | None = None) -> list[Event]:
        """Seal ``drafts`` as the next events and return them once they are durably committed.

        All drafts of one call commit in the same transaction, with ``checkpoints`` (device → the
        normalizer's state after producing them; see :meth:`OutboxStore.commit`) if given. A malformed draft raises
        ``protocols.sync.Malformed`` before anything is numbered. When the queue is full the call
        waits (back-pressure); when the outbox is failed and full, or stopping, it raises
        :class:`OutboxUnavailable`. Cancelling the call does not withdraw the events: once sealed
        they will be committed.
        """
        drafts = list(drafts)
        if not drafts and not checkpoints:
            return []
        if len(drafts) > self.max_pending:
            raise ValueError(f"{len(drafts)} drafts in one append exceed max_pending={self.max_pending}")
        async with self._seal_lock:  # seq order == queue order == commit order
            await self._wait_for_room(len(drafts))
            events = await self._seal(drafts)
            request = _Request(events, asyncio.get_running_loop().create_future(),
                               frozenset(e.device for e in events), dict(checkpoints) if checkpoints else None)
            # A caller cancelled at shutdown no longer awaits its future; if stop() then fails it, the
            # failure is already logged (outbox_stop_unflushed): do not also print "Future exception
            # was never retrieved" at exit. A caller still awaiting gets the exception as before.
            request.future.add_done_callback(_retrieve)
            self._queue.append(request)
            self._pending += len(events)
            self._wake.set()
            if self._state == "failed":
                self._report_devices()
        return await asyncio.shield(request.future)

    async def _wait_for_room(self, count: int) -> None:
        while True:
            if self._state == "stopped" or self._stopping:
                raise OutboxUnavailable("outbox is not running")
            if self._pending + count <= self.max_pending:
                return
            if self._state == "failed":
                raise OutboxUnavailable(
                    f"outbox failed ({self._reason}); {self._pending} events already wait in memory")
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=1.0)
                except TimeoutError:
                    pass

    async def _seal(self, drafts: list[DraftLike]) -> list[Event]:
        """Number and hash ``drafts``; the chain head moves only if every draft sealed."""
        seq, prev = self._next_seq, self._tail_hash
        events: list[Event] = []
        for start in range(0, len(drafts), SEAL_SLICE):
            if start:
                await asyncio.sleep(0)
            piece = drafts[start:start + SEAL_SLICE]
            ids = new_event_ids(len(piece))
            sealed = seal_many([UnsealedEvent(seq=seq + n, id=ids[n], hall=self.hall, device=d.device,
                                              type=d.type,  # type: ignore[arg-type]
                                              device_time=d.device_time, agent_time=d.agent_time, data=d.data)
                                for n, d in enumerate(piece)], prev)
            events.extend(sealed)
            seq, prev = seq + len(sealed), sealed[-1].hash
        self._next_seq, self._tail_hash = seq, prev
        return events

    # -- the writer ---------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        """Take the queue's head in groups and commit them, in order, forever (until stopped)."""
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                except TimeoutError:
                    pass
                continue
            if self._state == "ok" and self._pending < self.max_group:
                await self._pause(self.linger)  # let concurrent appends join this transaction
            group = self._head_group()
            if await self._commit(group):
                await self._resolve(group)
            else:  # while stopping, retry a little faster so a disk that frees up still gets the flush
                await asyncio.sleep(min(self.retry_interval, 0.5) if self._stopping else self.retry_interval)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but end early when stop() asks for a flush."""
        try:
            await asyncio.wait_for(self._flush.wait(), seconds)
        except TimeoutError:
            pass

    def _head_group(self) -> list[_Request]:
        """The queue's first requests holding at most ``max_group`` events (always at least one)."""
        group: list[_Request] = []
        total = 0
        for request in self._queue:
            if group and total + len(request.events) > self.max_group:
                break
            group.append(request)
            total += len(request.events)
        return group

    async def _commit(self, group: list[_Request]) -> bool:
        """Commit ``group``'s events; on failure fail closed and return False (nothing is dropped)."""
        events = [e for r in group for e in r.events]
        checkpoints: dict[str, bytes] = {}
        for request in group:
            if request.checkpoints:
                checkpoints.update(request.checkpoints)
        assert self._executor is not None
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._store.commit, events,
                                                            checkpoints or None)
        started = time.monotonic()
        while True:
            done, _ = await asyncio.wait({future}, timeout=self.commit_timeout)
            if done:
                break
            # A thread cannot be cancelled, and abandoning the commit would make its outcome unknown:
            # keep waiting for it, but tell the agent the storage is hung so it locks the machines.
            self._fail(f"commit stalled for {time.monotonic() - started:.0f} s (storage not answering)")
        try:
            rows = future.result()
        except Exception as exc:
            self._recent.clear()   # the store reopens its file: what it holds is read from there again
            self._fail(failure_reason(exc))
            return False
        recent = self._recent
        if rows and recent and recent[-1].seq != rows[0].seq - 1:
            recent.clear()
        recent.extend(rows)
        if self._state == "failed":
            self._recover()
        return True

    async def _resolve(self, group: list[_Request]) -> None:
        for request in group:
            popped = self._queue.popleft()
            assert popped is request
            self._pending -= len(request.events)
            if not request.future.done():  # a stop() racing a late commit may have settled it
                request.future.set_result(request.events)
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- fail closed and recovery ---------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        if self._state != "failed":
            self._state = "failed"
            self._reason = reason
            self._reported.clear()
            log.error("outbox_failed_closed", reason=reason, pending_events=self._pending,
                      first_pending_seq=self._queue[0].events[0].seq if self._queue else None,
                      retry_in_s=self.retry_interval)
        elif reason != self._reason:
            self._reason = reason
            log.error("outbox_still_failed", reason=reason, pending_events=self._pending)
        self._report_devices()
        # Waiting appends must see the new state (full + failed means OutboxUnavailable, not waiting).
        self._spawn(self._notify())

    def _report_devices(self) -> None:
        """Name to ``on_fail_closed`` every device with events waiting that was not named yet."""
        devices = {d for r in self._queue for d in r.devices} - self._reported
        if not devices and self._reported:
            return
        self._reported |= devices
        if self.on_fail_closed is not None:
            self._run_hook(self.on_fail_closed, self._reason or "failed", frozenset(devices))

    def _recover(self) -> None:
        log.warning("outbox_recovered", after=self._reason, last_seq=self._store.state.last_seq)
        self._state, self._reason = "ok", None
        self._reported.clear()
        if self.on_recovered is not None:
            self._run_hook(self.on_recovered)

    def _run_hook(self, hook: Callable[..., object], *args: object) -> None:
        """Call a hook; await it in the background if it is async. A failing hook is logged, never
        allowed to stop the writer (the events must still commit)."""
        try:
            result = hook(*args)
        except Exception:
            log.exception("outbox_hook_failed", hook=getattr(hook, "__name__", repr(hook)))
            return
        if inspect.isawaitable(result):
            self._spawn(result)

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        async def guarded() -> None:
            try:
                await awaitable
            except Exception:
                log.exception("outbox_hook_failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self._hook_tasks.add(task)
        task.add_done_callback(self._hook_tasks.discard)

    # -- reading, acks, pruning, status ---------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one store call on the worker thread, bounded by ``call_timeout``."""
        if self._executor is None:
            raise OutboxUnavailable("outbox is not running")
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        return await asyncio.wait_for(future, self.call_timeout)

    async def read_unacked(self, after_seq: int, limit: int = 1000) -> list[Event]:
        """One page of committed, unacked events with ``seq > after_seq``, in order.

        The replicator pages through the backlog with this (``after_seq`` = the last seq it got), so
        memory stays bounded by ``limit`` however large the backlog is.
        """
        return await self._read_page(self._store.read, after_seq, limit)

    async def read_unacked_stored(self, after_seq: int, limit: int = 1000) -> list[StoredEvent]:
        """:meth:`read_unacked` as stored bytes checked against their hashes, for
        ``protocols.sync.encode_batch_stored`` (the replicator's send path: no decode, no re-encode)."""
        page = self._read_recent(after_seq, limit)
        return page if page is not None else await self._read_page(self._store.read_stored, after_seq, limit)

    async def _read_page(self, read: Callable[[int, int], list[T]], after_seq: int, limit: int) -> list[T]:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        start = max(after_seq, self._store.state.acked_through)
        return await self._call(read, start, limit)

    def _read_recent(self, after_seq: int, limit: int) -> list[StoredEvent] | None:
        """The page from memory if its first event is still there, else None (read the file)."""
        recent = self._recent
        if limit < 1 or self._executor is None or not recent:
            return None
        state = self._store.state
        start = max(after_seq, state.acked_through, state.pruned_through) + 1 - recent[0].seq
        if start < 0:
            return None
        return list(islice(recent, start, start + limit))   # past its end: nothing newer is committed

    async def mark_acked(self, through_seq: int, last_hash: str) -> bool:
        """Record central's ack up to ``through_seq``; only forward, and only if ``last_hash`` is the
        hash stored at that seq (a forged or mistaken ack must never let events be pruned).

        Returns True if the watermark moved; a stale ack is ignored, a wrong one refused and logged.
        A storage error is raised (``sqlite3.Error``): the ack is then simply not recorded, the
        events stay unacked and will be sent again, which central treats as a duplicate.
        """
        outcome: AckOutcome = await self._call(self._store.ack, through_seq, last_hash)
        if outcome == "acked":
            return True
        if outcome == "stale":
            log.debug("outbox_ack_stale", through_seq=through_seq,
                      acked_through=self._store.state.acked_through)
        else:
            log.error("outbox_ack_refused", why=outcome, through_seq=through_seq, ack_hash=last_hash,
                      last_seq=self._store.state.last_seq)
        return False

    async def prune(self, now: int) -> int:
        """Delete acked events beyond the retention (``now`` in microseconds UTC); return how many.

        Beyond the retention means older than ``retention_seconds`` or, while the database's pages in
        use exceed ``retention_max_bytes``, the oldest acked ones whatever their age: the smaller
        retention holds. Unacked events and the newest event are never deleted; the chain's cut point
        is kept in meta. Works in chunks so appends interleave with a long prune. The space freed is
        reused by later appends (the file does not shrink, see :mod:`agent.outbox.store`).
        """
        cutoff = now - int(self.retention_seconds * 1_000_000)
        cap = None if self.retention_max_bytes is None else int(self.retention_max_bytes)
        total = 0
        for _ in range(PRUNE_MAX_CHUNKS):
            deleted = await self._call(self._store.prune_chunk, cutoff, PRUNE_CHUNK, cap)
            total += deleted
            if deleted == 0:
                break
        used, free = await self._call(self._store.space)
        oldest = await self._call(self._store.first_agent_time)
        self._last_prune = {"at": now, "events": total, "used_bytes": used, "free_bytes": free,
                            "oldest_kept_agent_time": oldest}
        if total:
            log.info("outbox_pruned", events=total, pruned_through=self._store.state.pruned_through,
                     used_mb=round(used / 1e6, 1), free_mb=round(free / 1e6, 1),
                     history_hours=None if oldest is None else round((now - oldest) / 3.6e9, 1))
        return total

    async def checkpoints(self) -> dict[str, bytes]:
        """The normalizer checkpoints committed with the last events (read once at agent start)."""
        return await self._call(self._store.load_checkpoints)

    @property
    def last_seq(self) -> int:
        """The last committed seq."""
        return self._store.state.last_seq

    @property
    def acked_through(self) -> int:
        """The last seq central has acknowledged (verified ack, hash checked)."""
        return self._store.state.acked_through

    async def wait_for_events(self, after_seq: int, timeout: float) -> bool:
        """Wait until an event with ``seq > after_seq`` is committed; False if ``timeout`` passes first.

        The replicator sleeps here instead of polling the database while the hall is quiet.
        """
        if self._store.state.last_seq > after_seq:
            return True
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(lambda: self._store.state.last_seq > after_seq
                                                 or self._state == "stopped")
        except TimeoutError:
            return False
        return self._store.state.last_seq > after_seq

    @property
    def state(self) -> State:
        """``ok``, ``failed`` (fail-closed, retrying) or ``stopped``."""
        return self._state

    def status(self) -> dict[str, Any]:
        """A cheap snapshot for ``hall-agent outbox``, health and metrics (no database call)."""
        s: ChainState = self._store.state
        return {
            "state": self._state,
            "reason": self._reason,
            "last_seq": s.last_seq,
            "acked_through": s.acked_through,
            "unacked_count": s.last_seq - s.acked_through,
            "oldest_unacked_agent_time": s.oldest_unacked_agent_time if s.last_seq > s.acked_through else None,
            "pending_in_memory": self._pending,
            "pruned_through": s.pruned_through,
            "commits": s.commits,
            "db_bytes": self._store.size_bytes(),
            "retention": {"days": self.retention_seconds / 86400,
                          "max_mb": None if self.retention_max_bytes is None else self.retention_max_bytes / 1e6},
            "last_prune": self._last_prune,
        }


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
