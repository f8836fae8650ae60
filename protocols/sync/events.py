"""Event records, their hash, sealing into the per-agent chain, and chain verification.

An event's hash is computed when the agent seals it and stored with it; batches carry the stored
bytes and hash. The agent re-checks a stored row's hash over its bytes each time it sends it
(:func:`stored_event`, which catches a corrupted row), and central recomputes it once while
verifying. ``central_time`` is outside the hash because central sets it after the agent signed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal, get_args

import msgspec

from .canonical import canonical_bytes, strict_decode
from .data import check_object
from .errors import BrokenChain, Malformed
from .fields import (
    GENESIS_HASH,
    HASH_ITEM,
    HASH_RE,
    UUID_ITEM,
    UUID_RE,
    VERSION,
    HallLen,
    HashLen,
    IdentLen,
    Micros,
    Seq,
    UuidLen,
    Version,
    bulk_match,
    is_hall,
    is_ident,
)
from .vocabulary import check_data

EventType = Literal[
    "session.started", "session.ended", "game.bet", "game.win", "game.loss", "game.ended", "op.cancelled",
    "game.error", "device.status", "device.door", "service", "jackpot", "handpay", "bill.accepted",
    "ticket.printed", "ticket.redeemed", "transfer", "meters.snapshot", "integration",
]
EVENT_TYPES: Final[tuple[str, ...]] = get_args(EventType)

_STRUCT = {"frozen": True, "kw_only": True, "forbid_unknown_fields": True, "gc": False}
"""``gc=False``: events hold no reference cycles, and not tracking them spares the cyclic collector
from scanning every decoded event (a measurable cost at 1000 events per batch)."""


class UnsealedEvent(msgspec.Struct, **_STRUCT):
    """What the agent's normalizer produces: an event before it joins the chain (no hashes yet)."""

    seq: Seq
    id: UuidLen
    hall: HallLen
    device: IdentLen
    type: EventType
    device_time: Micros | None
    agent_time: Micros
    data: dict[str, Any]


class _Hashed(msgspec.Struct, **_STRUCT):
    """Exactly the fields covered by the hash; its canonical encoding is what SHA-256 digests."""

    v: Version
    seq: Seq
    id: UuidLen
    hall: HallLen
    device: IdentLen
    type: EventType
    device_time: Micros | None
    agent_time: Micros
    data: dict[str, Any]
    prev_hash: HashLen


class Event(msgspec.Struct, omit_defaults=True, **_STRUCT):
    """A sealed event as stored and sent: the hashed fields plus ``hash`` and ``central_time``.

    ``central_time`` is omitted from the wire while unset (agents never set it).
    """

    v: Version
    seq: Seq
    id: UuidLen
    hall: HallLen
    device: IdentLen
    type: EventType
    device_time: Micros | None
    agent_time: Micros
    data: dict[str, Any]
    prev_hash: HashLen
    hash: HashLen
    central_time: Micros | None = None


_HASHED_DECODER = msgspec.json.Decoder(_Hashed)
_EVENT_DECODER = msgspec.json.Decoder(Event)


def _hashed_view(e: Event) -> _Hashed:
    return _Hashed(
        v=e.v, seq=e.seq, id=e.id, hall=e.hall, device=e.device, type=e.type, device_time=e.device_time,
        agent_time=e.agent_time, data=e.data, prev_hash=e.prev_hash,
    )


def canonical_event_bytes(event: Event) -> bytes:
    """The bytes an event's hash covers (all fields except ``hash`` and ``central_time``)."""
    return canonical_bytes(_hashed_view(event))


def chain_hash(event: Event) -> str:
    """SHA-256 (lower-case hex) of the event's canonical bytes, as it must appear in ``hash``."""
    return hashlib.sha256(canonical_bytes(_hashed_view(event))).hexdigest()


def check_event_data(event_type: str, data: object) -> None:
    """Apply the data rules of the event's type (:func:`.vocabulary.check_data`: the typed keys, and
    for keys outside the vocabulary no floats, the key charset, money ≥ 0); raises :class:`Malformed`."""
    check_data(event_type, data)


def _check_names(event: Event | _Hashed, where: str) -> None:
    if not is_hall(event.hall):
        raise Malformed(f"{where}.hall {event.hall!r} outside [A-Za-z0-9_-]{{1,64}}")
    if not is_ident(event.device):
        raise Malformed(f"{where}.device {event.device!r} outside [A-Za-z0-9_.:-]{{1,64}}")


def check_event(event: Event | _Hashed, where: str = "event") -> None:
    """The checks msgspec leaves to Python for one decoded event: ID/hash patterns and data rules."""
    _check_ids(event, where)
    check_event_data(event.type, event.data)


def _check_ids(event: Event | _Hashed, where: str) -> None:
    _check_names(event, where)
    if UUID_RE.match(event.id) is None:
        raise Malformed(f"{where}.id {event.id!r} is not a lower-case hyphenated UUID")
    if HASH_RE.match(event.prev_hash) is None:
        raise Malformed(f"{where}.prev_hash is not 64 lower-case hex digits")
    if isinstance(event, Event) and HASH_RE.match(event.hash) is None:
        raise Malformed(f"{where}.hash is not 64 lower-case hex digits")


def check_events(events: Sequence[Event], where: str = "events") -> None:
    """:func:`check_event` for many events, matching the unique IDs and hashes in bulk (hot path)."""
    for name, item in (("id", UUID_ITEM), ("prev_hash", HASH_ITEM), ("hash", HASH_ITEM)):
        bad = bulk_match(item, [getattr(e, name) for e in events])
        if bad is not None:
            raise Malformed(f"{where}[{bad}].{name} {getattr(events[bad], name)!r} has the wrong form")
    halls, idents = is_hall.seen, is_ident.seen
    for index, event in enumerate(events):
        if event.hall not in halls or event.device not in idents:
            _check_names(event, f"{where}[{index}]")
        check_event_data(event.type, event.data)


def seal(event: UnsealedEvent, prev_hash: str) -> Event:
    """Validate ``event``, link it to ``prev_hash`` and hash it: the one place an event is hashed.

    The canonical bytes are decoded back through the strict decoder before hashing, so an agent can
    never seal (and durably store) an event that central would refuse as malformed.
    """
    check_object(event.data)  # on the caller's values: NaN would otherwise encode as null
    hashed = _Hashed(
        v=VERSION, seq=event.seq, id=event.id, hall=event.hall, device=event.device, type=event.type,
        device_time=event.device_time, agent_time=event.agent_time, data=event.data, prev_hash=prev_hash,
    )
    raw = canonical_bytes(hashed)
    checked = strict_decode(raw, _HASHED_DECODER, "event")
    _check_ids(checked, "event")
    check_data(checked.type, checked.data)   # exactly central's check (verify path: check_events)
    if checked.seq == 1 and prev_hash != GENESIS_HASH:
        raise BrokenChain("the first event must follow the genesis hash", checked.seq)
    # Built from the decoded copy: exact types, and later changes to the caller's dict cannot
    # alter a sealed event.
    return Event(
        v=VERSION, seq=checked.seq, id=checked.id, hall=checked.hall, device=checked.device, type=checked.type,
        device_time=checked.device_time, agent_time=checked.agent_time, data=checked.data, prev_hash=prev_hash,
        hash=hashlib.sha256(raw).hexdigest(),
    )


def seal_many(events: Sequence[UnsealedEvent], prev_hash: str) -> list[Event]:
    """:func:`seal` for consecutive events, each linked to the one before (the first to ``prev_hash``).

    The same checks and the same result as sealing them one by one, with what repeats matched in bulk:
    the IDs in one regex pass, hall and device names once per distinct value, and no form check of a
    ``prev_hash`` that is the hash just computed. Any event failing the bulk check is sealed alone, so
    the error is exactly :func:`seal`'s. Why: sealing is most of an agent's Python per event.
    """
    if not events:
        return []
    ids = [e.id for e in events]
    if (HASH_RE.match(prev_hash) is None or not all(type(i) is str for i in ids)
            or bulk_match(UUID_ITEM, ids) is not None):
        sealed: list[Event] = []
        for e in events:   # one of them is refused: let seal() say which and why
            sealed.append(seal(e, prev_hash))
            prev_hash = sealed[-1].hash
        return sealed
    halls, idents = is_hall.seen, is_ident.seen
    out: list[Event] = []
    for event in events:
        check_object(event.data)
        raw = canonical_bytes(_Hashed(
            v=VERSION, seq=event.seq, id=event.id, hall=event.hall, device=event.device, type=event.type,
            device_time=event.device_time, agent_time=event.agent_time, data=event.data, prev_hash=prev_hash,
        ))
        checked = strict_decode(raw, _HASHED_DECODER, "event")
        if checked.hall not in halls or checked.device not in idents:
            _check_names(checked, "event")
        check_data(checked.type, checked.data)
        if checked.seq == 1 and prev_hash != GENESIS_HASH:
            raise BrokenChain("the first event must follow the genesis hash", checked.seq)
        prev_hash = hashlib.sha256(raw).hexdigest()
        out.append(Event(
            v=VERSION, seq=checked.seq, id=checked.id, hall=checked.hall, device=checked.device, type=checked.type,
            device_time=checked.device_time, agent_time=checked.agent_time, data=checked.data,
            prev_hash=checked.prev_hash, hash=prev_hash,
        ))
    return out


def verify_chain(prev_hash: str, events: Iterable[Event], first_seq: int | None = None) -> str:
    """Check that ``events`` continue the chain ending in ``prev_hash``; return the new last hash.

    Checks, per event: seq is the previous seq + 1 (or ``first_seq``), ``prev_hash`` links to the
    previous hash, and ``hash`` is the recomputed hash. Raises :class:`BrokenChain` naming the seq.
    """
    expected_seq = first_seq
    for event in events:
        if expected_seq is not None and event.seq != expected_seq:
            raise BrokenChain(f"expected seq {expected_seq}", event.seq)
        if event.prev_hash != prev_hash:
            raise BrokenChain("prev_hash does not link to the previous event's hash", event.seq)
        if event.seq == 1 and prev_hash != GENESIS_HASH:
            raise BrokenChain("the first event must follow the genesis hash", event.seq)
        actual = hashlib.sha256(canonical_bytes(_hashed_view(event))).hexdigest()
        if actual != event.hash:
            raise BrokenChain("hash does not match the event's content", event.seq)
        prev_hash = actual
        expected_seq = event.seq + 1
    return prev_hash


def encode_event(event: Event) -> bytes:
    """One event in wire form (for an outbox row, an export line, a test vector)."""
    return canonical_bytes(event)


def decode_event(payload: bytes) -> Event:
    """Strictly decode one wire-form event and check its own hash (not its link to a predecessor)."""
    event = strict_decode(payload, _EVENT_DECODER, "event")
    check_event(event)
    if chain_hash(event) != event.hash:
        raise BrokenChain("hash does not match the event's content", event.seq)
    return event


class StoredEvent(msgspec.Struct, frozen=True, gc=False):
    """A sealed event as the agent stores it: its exact wire bytes plus what sending needs to know.

    ``body`` is :func:`encode_event` of the sealed event, byte for byte what a batch carries for it,
    so a batch is spliced from bodies (:func:`encode_batch_stored`) instead of decoded and re-encoded.
    Build one with :func:`stored_event`, which checks the body's integrity.
    """

    seq: int
    agent_time: int
    prev_hash: str
    hash: str
    body: bytes


_STORED_TAIL = re.compile(
    rb'"hash":"(.{64})","id":".{36}","prev_hash":"(.{64})","seq":([1-9][0-9]{0,18}),"type":"[^"]{1,64}","v":1}\Z',
    re.DOTALL,
)
"""The end of a stored body from its ``hash`` member on: the top-level members that follow ``hash``
(``id, prev_hash, seq, type, v``), laid out from the body's end. The fixed-length values are matched
as any bytes (cheaper than character classes; the hash check vouches for their content), which
still pins every member to one position counted back from the end."""


def stored_event(body: bytes, seq: int, hash: str, agent_time: int) -> StoredEvent:
    """Check a stored event's bytes against its hash (no strict decode) and describe it for sending.

    ``body`` is the stored :func:`encode_event` bytes, ``seq``/``hash``/``agent_time`` the columns
    stored beside it. Raises :class:`BrokenChain` (naming ``seq``) when the content does not match
    the hash and :class:`Malformed` when the body is not in the form an agent stores.

    Why this is sound without decoding: the agent sealed these bytes itself, and :func:`seal`
    strictly decoded them (exactly as central will) before hashing, so a stored row never held
    anything central would refuse. What a row can suffer afterwards is corruption (disk, file
    copying, a stray write), and the hash catches that. The hash covers the canonical bytes of the
    event without its ``hash`` member; with keys sorted that member sits between ``hall`` and ``id``,
    so those bytes are ``body`` with the one ``"hash":"<hex>",`` member cut out. The member is found
    by searching from the END (``data``, the only nested, free-form value, comes first and may itself
    hold keys named ``hash`` or ``seq``), and everything after it must be the top-level tail
    ``"id":…,"prev_hash":…,"seq":…,"type":…,"v":1}`` through to the last byte. If SHA-256 of the
    cut bytes equals ``hash``, they are the very bytes that were hashed; the tail then fixes where
    the member was cut (right before the one ``"id"`` member whose layout runs to the end, i.e. the
    top-level one, after ``hall``), which is where canonical order puts it, so ``body`` is exactly
    the sealed event's wire form. ``seq`` and ``agent_time`` are
    checked against the body too, so the columns used for paging and lingering cannot disagree.
    """
    at = body.rfind(b'"hash":"')
    tail = _STORED_TAIL.match(body, at) if at > 0 else None
    if tail is None or not body.startswith(b'{"agent_time":%d,' % agent_time):
        raise Malformed(f"event: stored seq {seq} is not in the stored wire form (damaged row?)")
    named = tail[1].decode()
    if named != hash or int(tail[3]) != seq:
        raise BrokenChain("the stored row's seq or hash differs from its body", seq)
    if hashlib.sha256(body[:at] + body[tail.end(1) + 2:]).hexdigest() != named:  # cut '"hash":"<hex>",'
        raise BrokenChain("hash does not match the event's content", seq)
    return StoredEvent(seq=seq, agent_time=agent_time, prev_hash=tail[2].decode(), hash=named, body=body)


def require_agent_form(event: Event, index: int) -> None:
    """Refuse an agent-sent event that carries ``central_time``: only central may set it."""
    if event.central_time is not None:
        raise Malformed(f"batch: events[{index}].central_time is set by central, not by the agent")
