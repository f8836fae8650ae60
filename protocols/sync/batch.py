"""Signed batches: how an agent ships a contiguous run of its chain and how central checks one.

One Ed25519 signature per batch covers only the small header; the header names the chain's ends
(``prev_hash`` before ``first_seq`` and ``last_hash`` of ``last_seq``), and the hash chain binds every
event to ``last_hash``. So one signature plus one hash per event authenticates the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canonical import canonical_bytes, strict_decode
from .errors import BrokenChain, HallMismatch, Malformed
from .events import Event, StoredEvent, check_events, require_agent_form, verify_chain
from .fields import GENESIS_HASH, VERSION, Count, HallId, Micros, Seq, Sha256Hex, SignatureHex, Version
from .signing import sign, verify

MAX_BATCH_EVENTS: Final = 10_000
"""Upper bound a decoder accepts, so one payload cannot make central build millions of objects."""

MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""The largest payload of any hallsync MQTT message (16 MiB); central refuses a bigger one unread and the
broker's ``max_packet_size`` (:data:`MAX_PACKET_BYTES`) stops one at the door (issue 16: a 50 MB payload
cost central 277 MB plus 650 MB in its verifying child).

Why 16 MiB: batches are the only big messages. A full batch (``batch_max`` 5,000 events) of typical
events (~450 bytes with the longest IDs) is ~2.3 MB; 5,000 meter snapshots of all 30 named SAS meters
at their largest values (~3 KB each) would be ~15 MB, still under. Beyond that the agent's replicator
cuts batches by bytes (:func:`events_within_limit`), so no legitimate batch can exceed the limit; it
only needs to be comfortably above the largest single event (~10 KB: a snapshot of all 256 meter codes)."""

MAX_PACKET_BYTES: Final = MAX_MESSAGE_BYTES + 4096
"""The brokers' ``max_packet_size``: the whole MQTT packet, so a payload of :data:`MAX_MESSAGE_BYTES`
plus its fixed header, topic (at most ~110 bytes), packet id and MQTT 5 properties fits. A client
sending more is disconnected by Mosquitto. The shipped and generated broker configs use this value."""

_FRAME_BYTES: Final = 1024
"""An upper bound on a batch's bytes besides its events' bodies: the frame, header (~400) and signature."""

_CONTEXT: Final = "batch"


class BatchHeader(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the signature covers: who, which seq range, and the chain's two ends."""

    v: Version
    hall: HallId
    first_seq: Seq
    last_seq: Seq
    count: Count
    prev_hash: Sha256Hex
    last_hash: Sha256Hex
    created_at: Micros


class Batch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A decoded (not yet verified) batch: header, events in seq order, signature as hex."""

    header: BatchHeader
    events: Annotated[tuple[Event, ...], msgspec.Meta(min_length=1, max_length=MAX_BATCH_EVENTS)]
    sig: SignatureHex

    @property
    def identity(self) -> tuple[str, int, int, str]:
        """(hall, first_seq, last_seq, last_hash): equal for a replay, so central can dedupe on it."""
        h = self.header
        return (h.hall, h.first_seq, h.last_seq, h.last_hash)


_HEADER_DECODER = msgspec.json.Decoder(BatchHeader)


def encode_batch(
    events: Sequence[Event], hall: str, private_key: Ed25519PrivateKey, *, created_at: int
) -> bytes:
    """Sign and encode already-sealed ``events`` (contiguous, one hall) as one batch payload.

    Hashes are taken from the events, not recomputed (the agent hashed each once when sealing);
    only the cheap links are checked, so an agent bug is caught before it leaves the hall.
    ``created_at`` is the caller's clock (microseconds, UTC): this package reads no clock.
    """
    _check_run(events, hall)
    header, _, signature = _signed_header(events, hall, private_key, created_at)
    return _within_limit(canonical_bytes(Batch(header=header, events=tuple(events), sig=signature)))


def encode_batch_stored(
    events: Sequence[StoredEvent], hall: str, private_key: Ed25519PrivateKey, *, created_at: int
) -> bytes:
    """:func:`encode_batch` for events as the agent stores them: the same checks, header and
    signature, and byte for byte the same payload, spliced from the stored bodies (no decoding).

    A stored body is :func:`encode_event` of the sealed event, which is exactly how the batch
    encoding writes that event, and the batch's keys sort as ``events, header, sig``. The events'
    hall cannot be checked without decoding, so ``hall`` is taken as given: the outbox holding them
    is one hall's file and checks its hall when it opens.
    """
    _check_run(events, None)
    _, header_bytes, signature = _signed_header(events, hall, private_key, created_at)
    bodies = b",".join([event.body for event in events])
    return _within_limit(b"".join((b'{"events":[', bodies, b'],"header":', header_bytes, b',"sig":"',
                                   signature.encode(), b'"}')))


def events_within_limit(events: Sequence[StoredEvent], limit: int = MAX_MESSAGE_BYTES) -> int:
    """How many of ``events`` (from the first) one batch can carry within ``limit`` bytes.

    The agent's replicator sends that prefix and the rest in the next batch, so a run of unusually
    large events never makes a payload the broker or central would refuse. 0 means the first event
    alone does not fit (it can never be sent; the caller must say so rather than build the batch).
    """
    used = _FRAME_BYTES
    for count, event in enumerate(events):
        used += len(event.body) + 1
        if used > limit:
            return count
    return len(events)


def _within_limit(payload: bytes) -> bytes:
    """Refuse to hand out a batch central and the broker would refuse (the caller splits runs first)."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise Malformed(f"batch: payload of {len(payload)} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")
    return payload


def _check_run(events: Sequence[Event] | Sequence[StoredEvent], hall: str | None) -> None:
    """Refuse an empty run, a seq gap or a broken link (and, given ``hall``, another hall's event)."""
    if not events:
        raise Malformed("batch: no events")
    previous: Event | StoredEvent | None = None
    for event in events:
        if hall is not None and isinstance(event, Event) and event.hall != hall:
            raise HallMismatch(f"batch for hall {hall!r} holds seq {event.seq} of hall {event.hall!r}")
        if previous is not None:
            if event.seq != previous.seq + 1:
                raise BrokenChain(f"expected seq {previous.seq + 1}", event.seq)
            if event.prev_hash != previous.hash:
                raise BrokenChain("prev_hash does not link to the previous event's hash", event.seq)
        previous = event


def _signed_header(
    events: Sequence[Event] | Sequence[StoredEvent], hall: str, private_key: Ed25519PrivateKey, created_at: int
) -> tuple[BatchHeader, bytes, str]:
    """The header for a checked run, its canonical bytes (strictly re-decoded) and its signature."""
    first, last = events[0], events[-1]
    header = BatchHeader(
        v=VERSION, hall=hall, first_seq=first.seq, last_seq=last.seq, count=len(events),
        prev_hash=first.prev_hash, last_hash=last.hash, created_at=created_at,
    )
    header_bytes = canonical_bytes(header)
    strict_decode(header_bytes, _HEADER_DECODER, "batch header")
    return header, header_bytes, sign(_CONTEXT, header_bytes, private_key)


class _BatchParts(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A batch with its events still raw JSON: the first of :func:`decode_batch`'s two steps."""

    header: BatchHeader
    events: Annotated[tuple[msgspec.Raw, ...], msgspec.Meta(min_length=1, max_length=MAX_BATCH_EVENTS)]
    sig: SignatureHex


_PARTS_DECODER = msgspec.json.Decoder(_BatchParts)
_BATCH_DECODER = msgspec.json.Decoder(Batch)
_EVENT_DECODER = msgspec.json.Decoder(Event)


def decode_batch(payload: bytes) -> Batch:
    """Strictly decode a batch payload: syntax, types, data rules. Raises :class:`Malformed` only.

    Authenticity and integrity are :func:`verify_batch`'s job, since central first needs the
    header's hall to choose which public key to verify with.

    Decoded in two steps (the frame with raw events, then one event at a time) rather than in one
    call: a single decode of 5,000 events is one C call that holds the GIL for milliseconds, and
    central's store writer, on another thread, cannot take the GIL back after each of its SQLite
    statements until that call returns. The result and the accepted inputs are the same; an event's
    error is the one-piece decode's, naming the event's path (``$.events[3].seq``).
    """
    parts = strict_decode(payload, _PARTS_DECODER, "batch")
    decode = _EVENT_DECODER.decode
    try:
        events = tuple([decode(raw) for raw in parts.events])
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # the rare bad batch: decoded again in one piece for the error that names the event's path
        strict_decode(payload, _BATCH_DECODER, "batch")
        raise Malformed("batch: an event does not decode") from None
    for index, event in enumerate(events):
        require_agent_form(event, index)
    check_events(events)
    return Batch(header=parts.header, events=events, sig=parts.sig)


class _SeqRange(msgspec.Struct, frozen=True):
    first_seq: int
    last_seq: int


class _RangeOnly(msgspec.Struct, frozen=True):
    header: _SeqRange


_RANGE_DECODER = msgspec.json.Decoder(_RangeOnly)


def peek_seq_range(payload: bytes) -> tuple[int, int] | None:
    """The (first_seq, last_seq) a batch payload claims, read without decoding its events, or None if
    the payload has no such header. Unverified: a hint for routing (which ingest worker holds which
    seqs), never a fact to store or ack by."""
    try:
        header = _RANGE_DECODER.decode(payload).header
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return header.first_seq, header.last_seq


def verify_batch(batch: Batch, public_key: Ed25519PublicKey, *, expect_hall: str | None = None) -> None:
    """Check a decoded batch against the hall's registered key; return only if all holds.

    Order: the hall the caller expects (e.g. from the topic) → :class:`HallMismatch`; signature →
    :class:`BadSignature`; header consistency, seq contiguity, hash chain and its ends →
    :class:`BrokenChain` (naming the seq); every event's hall → :class:`HallMismatch`.
    The chain is checked before the events' halls so that tampering reads as tampering.
    """
    header = batch.header
    if expect_hall is not None and header.hall != expect_hall:
        raise HallMismatch(f"batch names hall {header.hall!r} but arrived for {expect_hall!r}")
    verify(_CONTEXT, canonical_bytes(header), batch.sig, public_key)
    if header.last_seq - header.first_seq + 1 != header.count:
        raise BrokenChain(f"header count {header.count} does not span seq {header.first_seq}..{header.last_seq}")
    if len(batch.events) != header.count:
        raise BrokenChain(f"header says {header.count} events, batch holds {len(batch.events)}", header.first_seq)
    if header.first_seq == 1 and header.prev_hash != GENESIS_HASH:
        raise BrokenChain("the first event must follow the genesis hash", 1)
    last_hash = verify_chain(header.prev_hash, batch.events, header.first_seq)
    if last_hash != header.last_hash:
        raise BrokenChain("chain does not end in the signed last_hash", header.last_seq)
    for event in batch.events:
        if event.hall != header.hall:
            raise HallMismatch(f"seq {event.seq} belongs to hall {event.hall!r}, batch to {header.hall!r}")
