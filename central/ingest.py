"""Batch ingest: topic + payload in, what to publish and what was logged out. No MQTT here.

The MQTT layer (central.service) subscribes with a shared subscription and calls :meth:`Ingestor.handle`
for each message, then publishes ``outcome.publish``. Keeping the decision logic free of the client
makes every rule testable with plain bytes.

Rules, in order (design.md, "Delivery contract"):

1. The hall comes from the topic; a bad topic, a payload above ``MAX_MESSAGE_BYTES`` (refused by its
   length alone: not decoded, not handed to the verifying child) or one that does not decode is
   ``format_error``.
2. An unregistered hall, a header naming another hall than the topic, a bad signature or a broken
   chain is ``rejected``. None of these touch a lock or the events: one hall's garbage costs others
   nothing but a throttled log row.
3. The verified batch is stored by :meth:`Store.ingest_events`, which decides inside its transaction
   (so it also holds with several processes on one database): a batch already held with the same
   hashes is a ``duplicate`` (logged, nothing changes, the current ack is sent again so an agent that
   lost the ack moves on); one overlapping the stored end keeps only the new tail after the overlap's
   hash matched; one disagreeing with a stored hash is a fork or forgery → ``rejected``; one starting
   after ``last_seq + 1`` is a gap → a signed resend request for exactly the missing seqs.
4. The ack (``acked_through_seq`` = the new contiguous end, with its hash) is built only after the
   commit returned.

Out-of-order batches: a shared subscription hands consecutive batches of one hall to different
workers, so "batch n+1 before batch n" is normal. Such a verified batch is kept in a small in-memory
buffer per hall and stored as soon as the gap closes. The buffer is bounded; what does not fit is
dropped, which is safe because nothing was acked: the agent keeps every unacked event and publishes
it again (after the resend request or its own ack timeout). The buffer is lost on restart for the
same reason without harm.

Per-hall serialisation: one :class:`asyncio.Lock` per registered hall is held only around storing,
so two workers cannot interleave one hall's batches while other halls proceed in parallel.
Decoding and signature checks run on worker threads outside the lock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from central.repos import Repositories
from central.repos.ingest import IngestResult, LogEntry, LogKind, SignedHeader
from protocols.logthrottle import WindowThrottle
from protocols.sync import (
    MAX_MESSAGE_BYTES,
    VERSION,
    Ack,
    BatchHeader,
    ResendRequest,
    SyncError,
    canonical_bytes,
    decode_batch,
    encode_ack,
    encode_resend,
    parse_topic,
    public_key_from_pem,
    topic,
    verify_batch,
)
from protocols.sync.gamingday import UTC_MIDNIGHT, DayRule

from .staging import StagedEvents, stage_events
from .timeutil import Clock, now_micros

log = structlog.get_logger("central.ingest")

OutcomeStatus = Literal["stored", "duplicate", "gap", "rejected", "format_error", "error"]

CONFLICT_DETAIL: Final = "conflicts with stored chain"
"""The ``detail`` of a ``rejected`` outcome that disagrees with a stored hash (fork or forgery), so
metrics can tell it from a bad signature without another status every caller must know."""

_THREAD_THRESHOLD: Final = 16 * 1024
"""Payloads at least this big are decoded and verified on a worker thread (hashing ~1000 events takes
milliseconds); small ones inline, where a thread hop would cost more than the work."""


@dataclass(frozen=True, slots=True)
class Publish:
    """One MQTT message central must send (QoS 1)."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What :meth:`Ingestor.handle` decided: the status, messages to publish and log rows written."""

    status: OutcomeStatus
    hall: str | None
    detail: str = ""
    publish: tuple[Publish, ...] = ()
    logged: tuple[LogEntry, ...] = ()
    stored: int = 0
    """New events committed by this call (including buffered batches it unblocked)."""
    acked_through_seq: int | None = None
    buffered: bool = False
    """A gap batch kept in memory until the missing seqs arrive."""
    recheck: bool = False
    """Batches of this hall wait in the buffer for a gap that another worker may be closing: the caller
    calls :meth:`Ingestor.recheck` shortly (see ``gap_grace``)."""
    chain_end: int | None = None
    """With ``recheck``: the hall's stored chain end this call read (whoever stored it), so the caller
    waits for it to move and sees whether other workers are still closing the gap."""


@dataclass(frozen=True, slots=True)
class Verified:
    """A batch whose signature, chain and hall were checked, ready for :meth:`Ingestor.commit`,
    staged for the store (rows and rollup effects computed off the single writer)."""

    hall: str
    header: BatchHeader
    sig: str
    staged: StagedEvents


class VerifierUnavailable(Exception):
    """The process that verifies batches (central.verify_pool) died or did not answer in time: the batch
    was not judged, so it gets an ``error`` outcome and no ack (the hall publishes it again)."""


class Preparer(Protocol):
    """Where big batches are decoded, verified and staged instead of a thread (central.verify_pool)."""

    async def prepare(self, payload: bytes, pem: str, hall: str, central_time: int,
                      rule: DayRule = ...) -> Verified | tuple[str, str]: ...


UNREGISTERED: Final = "(unregistered)"
"""The one log-throttle source of every hall topic that names no registered hall: garbage published on
5,000 invented hall topics shares one budget of rows instead of writing 5,000 (issue 16)."""


@dataclass(slots=True)
class _Pending:
    """Verified batches of one hall waiting for a gap to close, keyed by first seq."""

    batches: dict[int, Verified] = field(default_factory=dict)
    events: int = 0


class Ingestor:
    """Verifies, stores and acknowledges batches; see the module docstring for the rules."""

    def __init__(self, store: Repositories, central_private_key: Ed25519PrivateKey, clock: Clock = now_micros, *,
                 max_buffered_batches: int = 16, max_buffered_events: int = 50_000,
                 log_burst: int = 20, log_window_s: float = 60.0, preparer: Preparer | None = None,
                 max_payload_bytes: int = MAX_MESSAGE_BYTES, gap_grace: float = 0.0) -> None:
        self._preparer = preparer
        self.gap_grace = gap_grace
        """Seconds a gap may stay open before the resend request goes out (0: at once). With several
        ingest workers on one database a shared subscription hands batch n to one and n+1 to another;
        the one holding n+1 keeps it buffered and re-reads the stored end (:meth:`recheck`) instead of
        asking the hall for batch n that its neighbour is committing."""
        self.max_payload_bytes = max_payload_bytes
        self._store = store
        self._key = central_private_key
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._pending: dict[str, _Pending] = {}
        self._max_batches = max_buffered_batches
        self._max_events = max_buffered_events
        self._throttle = WindowThrottle(burst=log_burst, window=int(log_window_s * 1_000_000))
        """Keyed by (source, kind): a registered hall, :data:`UNREGISTERED` or None (no hall in the topic)."""

    @property
    def log_rows_suppressed(self) -> int:
        """Integration-log rows not written because of throttling (for metrics)."""
        return self._throttle.suppressed_total

    async def handle(self, topic_name: str, payload: bytes) -> IngestOutcome:
        """Process one message from ``hallsync/v1/halls/{hall}/batches``. Never raises on bad input."""
        return await self.commit(await self.prepare(topic_name, payload))

    async def prepare(self, topic_name: str, payload: bytes) -> IngestOutcome | Verified:
        """The lock-free half of :meth:`handle`: parse, look up the hall, decode and verify.

        Returns the refusal (already logged) or the verified batch for :meth:`commit`. A worker may
        prepare the next message of a hall while the previous one commits (the two halves overlap
        on two cores: hashing and decoding here, SQLite there).
        """
        try:
            hall, kind = parse_topic(topic_name)
        except SyncError as exc:
            return await self._refuse("format_error", None, f"topic: {exc}")
        if kind != "batches":
            return await self._refuse("format_error", hall, f"ingest takes batches, not {kind!r} ({topic_name})")
        if (oversize := self.oversize(payload)) is not None:
            return await self._refuse("format_error", hall, oversize)
        try:
            record = await self._store.halls.get_hall(hall)
        except Exception as exc:  # the store is down: nothing can be decided, nothing is acked
            log.error("store_unavailable", hall=hall, error=repr(exc))
            return IngestOutcome("error", hall, f"store: {exc!r}")
        if record is None:
            return await self._refuse("rejected", hall, f"hall {hall!r} is not registered", source=UNREGISTERED)
        if record.state != "active":   # halls disable|remove: refused unread; the agent keeps what it has
            return await self._refuse("rejected", hall, f"hall {hall!r} is {record.state}: nothing is stored "
                                                        "from it (hall-central halls enable)")
        if self._preparer is not None and len(payload) >= _THREAD_THRESHOLD:
            try:
                judged = await self._preparer.prepare(payload, record.public_key_pem, hall, self._clock(),
                                                      record.day_rule)
            except VerifierUnavailable as exc:
                return IngestOutcome("error", hall, f"verifier: {exc}")
            if isinstance(judged, Verified):
                return judged
            kind, detail = judged
            return await self._refuse(kind, hall, detail)  # type: ignore[arg-type]
        try:
            public_key = self._public_key(record.public_key_pem)
            if len(payload) >= _THREAD_THRESHOLD:
                return await asyncio.to_thread(decode_verify_stage, payload, public_key, hall, self._clock(),
                                               record.day_rule)
            return decode_verify_stage(payload, public_key, hall, self._clock(), record.day_rule)
        except SyncError as exc:
            return await self._refuse(exc.log_kind, hall, f"{type(exc).__name__}: {exc}")  # type: ignore[arg-type]

    async def commit(self, prepared: IngestOutcome | Verified) -> IngestOutcome:
        """The storing half of :meth:`handle`, under the hall's lock; passes a refusal through."""
        if isinstance(prepared, IngestOutcome):
            return prepared
        hall = prepared.hall
        lock = self._locks.get(hall)
        if lock is None:
            lock = self._locks[hall] = asyncio.Lock()
        async with lock:
            try:
                return await self._store_batch(prepared)
            except Exception as exc:
                log.error("ingest_failed", hall=hall, first_seq=prepared.header.first_seq, error=repr(exc))
                return IngestOutcome("error", hall, f"store: {exc!r}")

    # --- storing --------------------------------------------------------------------------------
    async def _store_batch(self, verified: Verified) -> IngestOutcome:
        hall, h = verified.hall, verified.header
        result = await self._store.ingest.ingest_staged(verified.staged, signed=signed_header(h, verified.sig))
        if result.status == "gap":
            return await self._gap(verified, result)
        if result.status == "duplicate":
            entry = await self._log("duplicate", hall, f"seq {h.first_seq}..{h.last_seq} already stored (replay)")
            return IngestOutcome("duplicate", hall, "already stored", publish=(self._ack(hall, result),),
                                 logged=entry, acked_through_seq=result.last_seq)
        if result.status == "conflict":
            entry = await self._log("rejected", hall, f"seq {h.first_seq}..{h.last_seq}: hash at seq "
                                    f"{result.conflict_seq} differs from the stored chain (fork or forgery)")
            return IngestOutcome("rejected", hall, CONFLICT_DETAIL, logged=entry)
        logged = list(await self._money_errors(hall, result))
        logged.extend(await self._missed_records(hall, result))
        stored = result.stored
        result, more, more_logged = await self._drain(hall, result)
        stored += more
        logged.extend(more_logged)
        log.debug("batch_stored", hall=hall, first_seq=h.first_seq, last_seq=h.last_seq, stored=stored,
                  acked_through=result.last_seq)
        return IngestOutcome("stored", hall, publish=(self._ack(hall, result),), logged=tuple(logged),
                             stored=stored, acked_through_seq=result.last_seq)

    async def _gap(self, verified: Verified, result: IngestResult) -> IngestOutcome:
        """Keep the early batch (if it fits) and ask for exactly the seqs nobody has delivered yet.

        The drain is a no-op with one process; with several on one database another process may have
        moved the end meanwhile, so buffered batches that now fit are stored first.
        """
        hall, h = verified.hall, verified.header
        buffered = self._buffer(hall, verified)
        result, stored, logged = await self._drain(hall, result)
        publish = [self._ack(hall, result)] if stored else []
        pending = self._pending.get(hall)
        waiting = list(pending.batches) if pending is not None else []
        if not buffered and h.first_seq > result.last_seq + 1:
            waiting.append(h.first_seq)
        if not waiting:
            return IngestOutcome("stored", hall, publish=tuple(publish), logged=tuple(logged), stored=stored,
                                 acked_through_seq=result.last_seq)
        reason = f"gap: stored through {result.last_seq}, received {h.first_seq}..{h.last_seq}"
        if buffered and self.gap_grace > 0:   # another worker may hold the missing batch: look again soon
            return IngestOutcome("gap", hall, reason, publish=tuple(publish), logged=tuple(logged), stored=stored,
                                 acked_through_seq=result.last_seq if stored else None, buffered=True,
                                 recheck=True, chain_end=result.last_seq)
        publish.append(await self._resend(hall, result, min(waiting), reason, logged,
                                          "buffered" if buffered else "dropped"))
        return IngestOutcome("gap", hall, reason, publish=tuple(publish), logged=tuple(logged), stored=stored,
                             acked_through_seq=result.last_seq if stored else None, buffered=buffered)

    async def _resend(self, hall: str, result: IngestResult, first_waiting: int, reason: str,
                      logged: list[LogEntry], fate: str) -> Publish:
        """The signed request for exactly the seqs between the stored end and the first waiting batch."""
        missing_from, missing_to = result.last_seq + 1, first_waiting - 1
        request = ResendRequest(v=VERSION, hall=hall, from_seq=missing_from, to_seq=missing_to, reason=reason,
                                created_at=self._clock())
        logged.extend(await self._log("resend", hall, f"requested seq {missing_from}..{missing_to} ({reason}; "
                                      f"{fate} the early batch)"))
        return Publish(topic(hall, "resend"), encode_resend(request, self._key))

    async def recheck(self, hall: str, *, final: bool) -> IngestOutcome:
        """Re-read ``hall``'s stored end (another worker may have moved it) and store the buffered batches
        it now reaches; ``final``: the grace is over, so a gap still open is asked for (resend request).

        The outcome's ``recheck`` says whether batches still wait (call again later)."""
        lock = self._locks.get(hall)
        if lock is None:
            lock = self._locks[hall] = asyncio.Lock()
        async with lock:
            if hall not in self._pending:
                return IngestOutcome("stored", hall)
            try:
                record = await self._store.halls.get_hall(hall)
                if record is None:   # removed meanwhile: nothing of it is stored any more
                    self._pending.pop(hall, None)
                    return IngestOutcome("rejected", hall, f"hall {hall!r} is not registered")
                end = IngestResult("stored", record.last_seq, record.last_hash)
                result, stored, logged = await self._drain(hall, end)
            except Exception as exc:
                log.error("ingest_failed", hall=hall, recheck=True, error=repr(exc))
                return IngestOutcome("error", hall, f"store: {exc!r}", recheck=not final)
            publish = [self._ack(hall, result)] if stored else []
            pending = self._pending.get(hall)
            if pending is None:
                return IngestOutcome("stored", hall, publish=tuple(publish), logged=tuple(logged), stored=stored,
                                     acked_through_seq=result.last_seq, chain_end=result.last_seq)
            first = min(pending.batches)
            reason = f"gap: stored through {result.last_seq}, holding {first}.. for {self.gap_grace:g} s"
            if not final:
                return IngestOutcome("gap", hall, reason, publish=tuple(publish), logged=tuple(logged),
                                     stored=stored, acked_through_seq=result.last_seq if stored else None,
                                     buffered=True, recheck=True, chain_end=result.last_seq)
            publish.append(await self._resend(hall, result, first, reason, logged, "buffered"))
            return IngestOutcome("gap", hall, reason, publish=tuple(publish), logged=tuple(logged), stored=stored,
                                 acked_through_seq=result.last_seq if stored else None, buffered=True,
                                 chain_end=result.last_seq)

    def _buffer(self, hall: str, verified: Verified) -> bool:
        pending = self._pending.setdefault(hall, _Pending())
        header = verified.header
        old = pending.batches.get(header.first_seq)
        if old is not None:
            if old.header.last_seq >= header.last_seq:
                return True
            pending.events -= old.header.count
            del pending.batches[header.first_seq]
        if len(pending.batches) >= self._max_batches or pending.events + header.count > self._max_events:
            return False
        pending.batches[header.first_seq] = verified
        pending.events += header.count
        return True

    async def _drain(self, hall: str, result: IngestResult) -> tuple[IngestResult, int, list[LogEntry]]:
        """Store buffered batches the new end now reaches; return the final state and what it stored."""
        stored = 0
        logged: list[LogEntry] = []
        pending = self._pending.get(hall)
        while pending is not None and pending.batches:
            for first in [f for f, v in pending.batches.items() if v.header.last_seq <= result.last_seq]:
                pending.events -= pending.batches.pop(first).header.count
            ready = [f for f in pending.batches if f <= result.last_seq + 1]
            if not ready:
                break
            verified = pending.batches.pop(min(ready))
            header = verified.header
            pending.events -= header.count
            nxt = await self._store.ingest.ingest_staged(verified.staged, signed=signed_header(header, verified.sig))
            if nxt.status == "stored":
                stored += nxt.stored
                logged.extend(await self._money_errors(hall, nxt))
                logged.extend(await self._missed_records(hall, nxt))
                result = nxt
            elif nxt.status == "conflict":
                logged.extend(await self._log("rejected", hall, f"buffered seq {header.first_seq}.."
                                              f"{header.last_seq} conflicts at seq {nxt.conflict_seq}"))
        if pending is not None and not pending.batches:
            del self._pending[hall]
        return result, stored, logged

    async def _money_errors(self, hall: str, result: IngestResult) -> tuple[LogEntry, ...]:
        entries: list[LogEntry] = []
        for seq, reason in result.money_errors:
            entries.extend(await self._log("format_error", hall, f"seq {seq} stored but its money is not counted: "
                                           f"{reason}"))
        return tuple(entries)

    async def _missed_records(self, hall: str, result: IngestResult) -> tuple[LogEntry, ...]:
        """A ``missed`` record from the hall (meters moved more than its events said) goes to the
        integration log as ``missed``, once: only for events this call newly stored (the store
        reports those). Not throttled: each one is money an operator must be able to find."""
        entries = []
        for record in result.missed:
            amounts = {k: v for k, v in record.data.items() if k not in ("kind", "currency") and isinstance(v, int)}
            detail = f"seq {record.seq}: meters show activity the events missed: {amounts}"
            entries.append(LogEntry(kind="missed", detail=detail[:2000], time=self._clock(), hall=hall,
                                    device=record.device))
        if not entries:
            return ()
        try:
            await self._store.ingest.log(entries)
        except Exception as exc:
            log.error("integration_log_failed", hall=hall, kind="missed", error=repr(exc))
            return ()
        for entry in entries:
            log.warning("integration", kind="missed", hall=hall, device=entry.device, detail=entry.detail)
        return tuple(entries)

    def _ack(self, hall: str, result: IngestResult) -> Publish:
        ack = Ack(v=VERSION, hall=hall, acked_through_seq=result.last_seq, last_hash=result.last_hash,
                  created_at=self._clock())
        return Publish(topic(hall, "acks"), encode_ack(ack, self._key))

    # --- refusing and logging -------------------------------------------------------------------
    def oversize(self, payload: bytes) -> str | None:
        """The refusal's detail if ``payload`` is above the limit, else None (no agent builds one)."""
        if len(payload) <= self.max_payload_bytes:
            return None
        return f"payload of {len(payload)} bytes exceeds the limit of {self.max_payload_bytes}"

    async def _refuse(self, kind: LogKind, hall: str | None, detail: str, *,
                      source: str | None = "") -> IngestOutcome:
        status: OutcomeStatus = "format_error" if kind == "format_error" else "rejected"
        return IngestOutcome(status, hall, detail, logged=await self._log(kind, hall, detail, source=source))

    async def log_throttled(self, kind: LogKind, hall: str | None, detail: str, *,
                            source: str | None = "") -> tuple[LogEntry, ...]:
        """Write one integration-log row (and a log line) unless ``source`` is over its budget.

        ``source`` defaults to ``hall``; pass :data:`UNREGISTERED` for a hall central does not know. The
        service's status and command-result refusals go through here too: one budget, one counter.
        """
        now = self._clock()
        admitted, suppressed = self._throttle.admit((hall if source == "" else source, kind), now)
        if not admitted:
            return ()
        if suppressed:
            detail = f"{detail} (+{suppressed} similar suppressed)"
        entry = LogEntry(kind=kind, detail=detail[:2000], time=now, hall=hall)
        level = "info" if kind in ("duplicate", "resend") else "warning"
        getattr(log, level)("integration", kind=kind, hall=hall, detail=entry.detail)
        for attempt in (1, 2):  # one retry: a rare SQLITE_MISUSE has cost a row once (session note, issue 02)
            try:
                await self._store.ingest.log([entry])
            except Exception as exc:
                log.error("integration_log_failed", hall=hall, kind=kind, attempt=attempt, error=repr(exc))
                continue
            return (entry,)
        return ()

    _log = log_throttled

    def _public_key(self, pem: str) -> Ed25519PublicKey:
        """Parse a registered key once; keyed by the PEM so a replaced key takes effect at once."""
        key = self._keys.get(pem)
        if key is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            key = self._keys[pem] = public_key_from_pem(pem.encode())
        return key


def signed_header(header: BatchHeader, sig: str) -> SignedHeader:
    """The batch's header as the hall signed it, for the store to keep beside the events (exports)."""
    return SignedHeader(hall=header.hall, first_seq=header.first_seq, last_seq=header.last_seq,
                        header=canonical_bytes(header).decode(), sig=sig)


def decode_verify_stage(payload: bytes, public_key: Ed25519PublicKey, hall: str, central_time: int,
                        rule: DayRule = UTC_MIDNIGHT) -> Verified:
    """Decode strictly, verify signature, chain and hall (raising only SyncError subclasses), then
    stage the events for the store, all on the caller's thread (a worker thread for big batches)."""
    batch = decode_batch(payload)
    verify_batch(batch, public_key, expect_hall=hall)
    return Verified(hall, batch.header, batch.sig, stage_events(hall, batch.events, central_time, rule))


__all__ = ["IngestOutcome", "Ingestor", "Preparer", "Publish", "Verified", "VerifierUnavailable", "decode_verify_stage"]
