"""Events, canonical encoding, the hash chain and signed batches (protocols.sync)."""

from __future__ import annotations

import hashlib
import json
import uuid

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.sync import (
    EVENT_TYPES,
    GENESIS_HASH,
    MAX_MESSAGE_BYTES,
    MONEY_TYPES,
    BadSignature,
    Batch,
    BatchHeader,
    BrokenChain,
    Event,
    HallMismatch,
    Malformed,
    StoredEvent,
    SyncError,
    UnsealedEvent,
    UnsupportedVersion,
    canonical_bytes,
    canonical_event_bytes,
    chain_hash,
    decode_batch,
    decode_event,
    encode_batch,
    encode_batch_stored,
    encode_event,
    events_within_limit,
    generate_private_key,
    peek_seq_range,
    seal,
    seal_many,
    signing_input,
    stored_event,
    verify_batch,
    verify_chain,
)
from protocols.sync.vocabulary import DATA_TYPES

T0 = 1_767_225_600_000_000
INT64 = st.integers(-(2**63), 2**63 - 1)
KEYS = st.from_regex(r"[A-Za-z0-9_.:-]{1,12}", fullmatch=True).filter(lambda k: not k.endswith("amount"))
HALLS = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
DEVICES = st.from_regex(r"[A-Za-z0-9_.:-]{1,16}", fullmatch=True)
TIMES = st.integers(0, 2**63 - 1)
JSON = st.recursive(
    st.none() | st.booleans() | INT64 | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
KEY_A = generate_private_key()
KEY_B = generate_private_key()


@st.composite
def event_data(draw: st.DrawFn, event_type: str) -> dict[str, object]:
    """Free-form data (keys the type's vocabulary does not name) plus what the type requires."""
    named = DATA_TYPES[event_type].__struct_fields__
    data = draw(st.dictionaries(KEYS.filter(lambda k: k not in {"currency", "meters", *named}), JSON, max_size=5))
    if event_type in MONEY_TYPES or draw(st.booleans()):
        data["amount"] = draw(st.integers(0, 2**63 - 1))
        data["currency"] = draw(st.from_regex(r"[A-Z]{3}", fullmatch=True))
    if draw(st.booleans()):
        data["win_amount"] = draw(st.integers(0, 10**12))
    if event_type == "transfer":
        data["direction"] = draw(st.sampled_from(("in", "out")))
    if event_type == "meters.snapshot":
        data["meters"] = draw(st.dictionaries(KEYS, st.integers(0, 2**63 - 1), min_size=1, max_size=4))
    return data


@st.composite
def unsealed(draw: st.DrawFn, seq: int, hall: str) -> UnsealedEvent:
    kind = draw(st.sampled_from(EVENT_TYPES))
    return UnsealedEvent(
        seq=seq, id=str(draw(st.uuids())), hall=hall, device=draw(DEVICES), type=kind,
        device_time=draw(st.none() | TIMES), agent_time=draw(TIMES), data=draw(event_data(kind)),
    )


@st.composite
def chains(draw: st.DrawFn, max_size: int = 6) -> tuple[str, list[Event]]:
    """(hall, sealed contiguous events), starting at seq 1 or anywhere later."""
    hall = draw(HALLS)
    first = draw(st.one_of(st.just(1), st.integers(2, 2**63 - max_size - 1)))
    prev = GENESIS_HASH if first == 1 else draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
    events = []
    for offset in range(draw(st.integers(1, max_size))):
        event = seal(draw(unsealed(first + offset, hall)), prev)
        events.append(event)
        prev = event.hash
    return hall, events


def make_chain(n: int, hall: str = "hall-01", first: int = 1) -> list[Event]:
    """A plain deterministic chain of bets."""
    prev = GENESIS_HASH if first == 1 else "ab" * 32
    out = []
    for i in range(n):
        event = seal(UnsealedEvent(
            seq=first + i, id=str(uuid.UUID(int=first + i)), hall=hall, device="egm-001", type="game.bet",
            device_time=T0 + i, agent_time=T0 + i + 5, data={"amount": 100 + i, "currency": "EUR", "game": "g-1"},
        ), prev)
        out.append(event)
        prev = event.hash
    return out


def bet(**data: object) -> UnsealedEvent:
    return UnsealedEvent(
        seq=1, id="6f1c2a9e-3b7d-4c1e-9a5f-0d2b8e4c7a13", hall="hall-01", device="egm-001", type="game.bet",
        device_time=None, agent_time=T0, data=data,
    )


# --- canonical encoding and the event hash ------------------------------------------------------

VECTOR_BYTES = (
    b'{"agent_time":1767225600000000,"data":{"amount":250,"currency":"EUR","game":"g-17",'
    b'"note":"\xc3\x9cn\xc3\xafcode \\"q\\" \\\\ \\n"},"device":"egm-001","device_time":null,'
    b'"hall":"hall-01","id":"6f1c2a9e-3b7d-4c1e-9a5f-0d2b8e4c7a13",'
    b'"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",'
    b'"seq":1,"type":"game.bet","v":1}'
)
VECTOR_HASH = "796c4f6241fdf3140ce5bf0ef646c115c545502cd05fb30343d384a011d0db4e"


def test_known_vector_pins_the_canonical_bytes_and_hash() -> None:
    """A fixed vector a third-party implementation can check itself against."""
    event = seal(bet(amount=250, currency="EUR", game="g-17", note='Ünïcode "q" \\ \n'), GENESIS_HASH)
    assert canonical_event_bytes(event) == VECTOR_BYTES
    assert hashlib.sha256(VECTOR_BYTES).hexdigest() == VECTOR_HASH == event.hash == chain_hash(event)


@settings(max_examples=60, deadline=None)
@given(chains())
def test_canonical_bytes_equal_python_json_dumps(chain: tuple[str, list[Event]]) -> None:
    """The documented equivalence: sorted keys, no spaces, ensure_ascii=False, UTF-8."""
    for event in chain[1]:
        fields = msgspec.structs.asdict(event)
        del fields["hash"], fields["central_time"]
        reference = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert canonical_event_bytes(event) == reference
        assert event.hash == hashlib.sha256(reference).hexdigest()


@settings(max_examples=60, deadline=None)
@given(chains(), st.none() | TIMES)
def test_event_round_trip(chain: tuple[str, list[Event]], central_time: int | None) -> None:
    for event in chain[1]:
        stored = msgspec.structs.replace(event, central_time=central_time)
        assert decode_event(encode_event(stored)) == stored
        assert chain_hash(stored) == event.hash, "central_time is outside the hash"


def test_central_time_is_omitted_until_set() -> None:
    event = make_chain(1)[0]
    assert b"central_time" not in encode_event(event)
    assert b'"central_time":7' in encode_event(msgspec.structs.replace(event, central_time=7))


# --- data rules: floats, amounts, currency, meters ----------------------------------------------

@pytest.mark.parametrize("data", [
    {"amount": 1.5, "currency": "EUR"},
    {"amount": 100, "currency": "EUR", "rtp": 0.96},
    {"amount": 100, "currency": "EUR", "x": [1, {"y": 2.0}]},
    {"amount": 100, "currency": "EUR", "x": float("nan")},
    {"amount": 100, "currency": "EUR", "x": float("inf")},
])
def test_floats_are_refused_when_sealing(data: dict[str, object]) -> None:
    with pytest.raises(Malformed, match="float"):
        seal(bet(**data), GENESIS_HASH)


@pytest.mark.parametrize("data", [
    {"amount": -1, "currency": "EUR"},
    {"amount": 100, "currency": "EUR", "bet_amount": -5},
    {"amount": True, "currency": "EUR"},
    {"amount": "100", "currency": "EUR"},
    {"amount": None, "currency": "EUR"},
    {"amount": 100},
    {"amount": 100, "currency": "eur"},
    {"amount": 100, "currency": "EURO"},
    {"currency": "EUR"},
    {},
])
def test_bad_or_missing_amounts_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(Malformed):
        seal(bet(**data), GENESIS_HASH)


def test_amount_rule_applies_to_every_type_and_meters_are_checked() -> None:
    status = msgspec.structs.replace(bet(), type="device.status", data={"refund_amount": -3})
    with pytest.raises(Malformed, match="refund_amount"):
        seal(status, GENESIS_HASH)
    seal(msgspec.structs.replace(bet(), type="device.status", data={"state": "ok"}), GENESIS_HASH)
    meters = msgspec.structs.replace(bet(), type="meters.snapshot", data={"meters": {"coin_in": 5, "coin_out": -1}})
    with pytest.raises(Malformed, match="coin_out"):
        seal(meters, GENESIS_HASH)
    with pytest.raises(Malformed, match="meters"):
        seal(msgspec.structs.replace(bet(), type="meters.snapshot", data={}), GENESIS_HASH)


@pytest.mark.parametrize("raw", [b"1.5", b"1e2", b"-1", b"true", b"100.0"])
def test_floats_and_negative_amounts_are_refused_when_decoding(raw: bytes) -> None:
    wire = encode_event(make_chain(1)[0]).replace(b'"amount":100', b'"amount":' + raw)
    with pytest.raises(Malformed):
        decode_event(wire)


@pytest.mark.parametrize("data", [
    {"bad key": 1}, {"": 1}, {"k/ey": 1}, {"ключ": 1}, {1: 1}, {"x": (1, 2)}, {"x": b"bytes"},
    {"x": 2**63}, {"x": -(2**63) - 1}, {"x": {"y": {"z": set()}}},
])
def test_data_shapes_outside_the_spec_are_refused(data: dict[object, object]) -> None:
    with pytest.raises(Malformed):
        seal(_with(data), GENESIS_HASH)


def _with(extra: dict[object, object]) -> UnsealedEvent:
    data: dict[object, object] = {"amount": 1, "currency": "EUR", **extra}
    return msgspec.structs.replace(bet(), data=data)


def test_deep_nesting_is_refused() -> None:
    nested: object = 1
    for _ in range(40):
        nested = {"k": nested}
    with pytest.raises(Malformed, match="deeper"):
        seal(_with({"n": nested}), GENESIS_HASH)


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(Malformed):
        seal(_with({"s": "\ud800"}), GENESIS_HASH)


@pytest.mark.parametrize("change", [
    {"seq": 0}, {"seq": 2**63}, {"seq": True}, {"id": "6F1C2A9E-3B7D-4C1E-9A5F-0D2B8E4C7A13"},
    {"id": "6f1c2a9e3b7d4c1e9a5f0d2b8e4c7a13"}, {"hall": "hall/01"}, {"hall": "hall+"}, {"hall": ""},
    {"device": "egm 1"}, {"type": "game.unknown"}, {"agent_time": -1}, {"device_time": 1.5},
    {"type": None}, {"type": ["game.bet"]}, {"data": None}, {"data": [1]}, {"hall": 1},
    {"agent_time": None},
])
def test_seal_refuses_fields_outside_the_spec(change: dict[str, object]) -> None:
    with pytest.raises(Malformed):
        seal(msgspec.structs.replace(bet(amount=1, currency="EUR"), **change), GENESIS_HASH if change.get(
            "seq", 1) == 1 else "ab" * 32)


def test_sealed_event_is_independent_of_the_callers_dict() -> None:
    original = bet(amount=1, currency="EUR")
    sealed = seal(original, GENESIS_HASH)
    original.data["amount"] = 999
    assert sealed.data["amount"] == 1 and chain_hash(sealed) == sealed.hash


def test_seal_takes_a_uuid_object_and_stores_its_canonical_string() -> None:
    sealed = seal(msgspec.structs.replace(bet(amount=1, currency="EUR"), id=uuid.UUID(int=1)), GENESIS_HASH)
    assert sealed.id == "00000000-0000-0000-0000-000000000001"
    assert decode_event(encode_event(sealed)) == sealed


def test_first_event_must_follow_genesis() -> None:
    with pytest.raises(BrokenChain, match="genesis"):
        seal(bet(amount=1, currency="EUR"), "ab" * 32)
    with pytest.raises(Malformed):
        seal(msgspec.structs.replace(bet(amount=1, currency="EUR"), seq=2), "AB" * 32)



@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_seal_many_is_sealing_one_by_one(data: st.DataObject) -> None:
    """The outbox seals an append's events together: the same events, hashes and links as one by one."""
    hall = data.draw(HALLS)
    first = data.draw(st.one_of(st.just(1), st.integers(2, 2**40)))
    prev = GENESIS_HASH if first == 1 else data.draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
    todo = [data.draw(unsealed(first + n, hall)) for n in range(data.draw(st.integers(0, 6)))]
    alone, at = [], prev
    for event in todo:
        alone.append(seal(event, at))
        at = alone[-1].hash
    assert seal_many(todo, prev) == alone


@pytest.mark.parametrize("change", [
    {"id": "6F1C2A9E-3B7D-4C1E-9A5F-0D2B8E4C7A13"}, {"id": "not-a-uuid"}, {"id": 7}, {"hall": "hall/01"},
    {"device": "egm 1"}, {"type": "game.unknown"}, {"agent_time": -1}, {"data": {"amount": -1, "currency": "EUR"}},
    {"data": {"amount": 1.5, "currency": "EUR"}}, {"data": None},
])
def test_seal_many_refuses_what_seal_refuses_with_the_same_words(change: dict[str, object]) -> None:
    """One bad event among good ones: seal_many raises exactly what seal says of that event."""
    good = make_chain(3)
    todo = [UnsealedEvent(seq=e.seq, id=e.id, hall=e.hall, device=e.device, type=e.type, device_time=e.device_time,
                          agent_time=e.agent_time, data=dict(e.data)) for e in good]
    todo[1] = msgspec.structs.replace(todo[1], **change)
    with pytest.raises(Malformed) as alone:
        seal(todo[1], good[0].hash)
    with pytest.raises(Malformed) as together:
        seal_many(todo, GENESIS_HASH)
    assert str(together.value) == str(alone.value)
    with pytest.raises(BrokenChain, match="genesis"):
        seal_many(todo[:1], "ab" * 32)
    with pytest.raises(Malformed):
        seal_many(todo[:1], "AB" * 32)


# --- the chain ----------------------------------------------------------------------------------

def test_verify_chain_returns_the_last_hash() -> None:
    chain = make_chain(5)
    assert verify_chain(GENESIS_HASH, chain) == chain[-1].hash
    assert verify_chain(chain[1].hash, chain[2:], first_seq=3) == chain[-1].hash
    assert verify_chain("ab" * 32, []) == "ab" * 32


def test_chain_broken_in_the_middle_names_the_seq() -> None:
    chain = make_chain(10)
    altered = msgspec.structs.replace(chain[4], data={**chain[4].data, "amount": 1_000_000})
    with pytest.raises(BrokenChain, match=r"seq 5\b") as info:
        verify_chain(GENESIS_HASH, [*chain[:4], altered, *chain[5:]])
    assert info.value.seq == 5


def test_relinked_reordered_and_gapped_chains_name_the_seq() -> None:
    chain = make_chain(6)
    with pytest.raises(BrokenChain) as info:
        verify_chain(GENESIS_HASH, [*chain[:3], *chain[4:]])  # seq 4 missing
    assert info.value.seq == 5
    with pytest.raises(BrokenChain) as info:
        verify_chain(GENESIS_HASH, [chain[0], chain[2], chain[1]])
    assert info.value.seq == 3
    relinked = msgspec.structs.replace(chain[3], prev_hash=chain[1].hash)
    with pytest.raises(BrokenChain) as info:
        verify_chain(GENESIS_HASH, [*chain[:3], relinked])
    assert info.value.seq == 4
    with pytest.raises(BrokenChain) as info:
        verify_chain(GENESIS_HASH, chain, first_seq=2)
    assert info.value.seq == 1


def test_decode_event_checks_its_own_hash() -> None:
    wire = encode_event(make_chain(1)[0]).replace(b'"amount":100', b'"amount":101')
    with pytest.raises(BrokenChain, match="seq 1"):
        decode_event(wire)


# --- batches ------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains(max_size=8), TIMES)
def test_batch_round_trip_and_verify(chain: tuple[str, list[Event]], created_at: int) -> None:
    hall, events = chain
    payload = encode_batch(events, hall, KEY_A, created_at=created_at)
    batch = decode_batch(payload)
    assert list(batch.events) == events
    assert batch.header == BatchHeader(
        v=1, hall=hall, first_seq=events[0].seq, last_seq=events[-1].seq, count=len(events),
        prev_hash=events[0].prev_hash, last_hash=events[-1].hash, created_at=created_at,
    )
    verify_batch(batch, KEY_A.public_key(), expect_hall=hall)
    assert batch.identity == (hall, events[0].seq, events[-1].seq, events[-1].hash)
    assert canonical_bytes(batch) == payload, "encode output is itself canonical"


def test_replayed_batch_decodes_identically() -> None:
    events = make_chain(4)
    payload = encode_batch(events, "hall-01", KEY_A, created_at=T0)
    first, again = decode_batch(payload), decode_batch(bytes(payload))
    assert first == again and first.identity == again.identity
    resent = decode_batch(encode_batch(events, "hall-01", KEY_A, created_at=T0 + 1))
    assert resent.identity == first.identity, "a re-sent range is the same batch for dedupe"
    assert decode_batch(encode_batch(events[:3], "hall-01", KEY_A, created_at=T0)).identity != first.identity


@pytest.mark.parametrize("first", [1, 41])
def test_a_batch_seq_range_is_peeked_without_its_events(first: int) -> None:
    events = make_chain(5, first=first)
    assert peek_seq_range(encode_batch(events, "hall-01", KEY_A, created_at=T0)) == (first, first + 4)
    assert peek_seq_range(b'{"header": {"last_seq": 9, "first_seq": 3}, "events": [{"not": "checked"}]}') == (3, 9)
    for junk in (b"", b"[]", b'{"header": {"first_seq": "1", "last_seq": 2}}', b'{"events": []}', b"\xff"):
        assert peek_seq_range(junk) is None


def test_batch_signed_by_another_halls_key_is_bad_signature() -> None:
    events = make_chain(3, hall="hall-01")
    forged = decode_batch(encode_batch(events, "hall-01", KEY_B, created_at=T0))
    with pytest.raises(BadSignature):
        verify_batch(forged, KEY_A.public_key())
    assert BadSignature.log_kind == "rejected"


def _tamper_regions(payload: bytes) -> tuple[int, int]:
    return payload.index(b'"header":{'), payload.index(b'"sig":"')


ALLOWED = {
    "events": (BrokenChain, Malformed),
    "header": (BadSignature, Malformed, HallMismatch),  # the hall altered to another valid ID
    "sig": (BadSignature, Malformed),
}


def _check_tamper(payload: bytes, position: int, new_byte: int) -> None:
    header_at, sig_at = _tamper_regions(payload)
    region = "events" if position < header_at else "header" if position < sig_at else "sig"
    altered = bytearray(payload)
    altered[position] = new_byte
    with pytest.raises(SyncError) as info:
        verify_batch(decode_batch(bytes(altered)), KEY_A.public_key(), expect_hall="hall-01")
    assert isinstance(info.value, ALLOWED[region]), (position, region, chr(new_byte), info.value)


TAMPER_PAYLOAD = encode_batch(make_chain(3, first=41), "hall-01", KEY_A, created_at=T0)


@pytest.mark.parametrize("flip", [0x01, 0x20, 0x04])
def test_every_single_byte_flip_is_rejected_with_the_right_kind(flip: int) -> None:
    """Exhaustive over every byte of a 3-event batch; 0x20 flips letter case (hex, UUIDs)."""
    for position in range(len(TAMPER_PAYLOAD)):
        _check_tamper(TAMPER_PAYLOAD, position, TAMPER_PAYLOAD[position] ^ flip)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_byte_change_is_rejected_with_the_right_kind(data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(TAMPER_PAYLOAD) - 1))
    new_byte = data.draw(st.integers(0, 255).filter(lambda b: b != TAMPER_PAYLOAD[position]))
    _check_tamper(TAMPER_PAYLOAD, position, new_byte)


def _signed_batch(header: BatchHeader, events: list[Event], key: object = KEY_A) -> Batch:
    """A batch built by hand, so verify_batch's own checks are reached past encode_batch's."""
    sig = key.sign(signing_input("batch", canonical_bytes(header))).hex()  # type: ignore[attr-defined]
    return decode_batch(canonical_bytes(Batch(header=header, events=tuple(events), sig=sig)))


def _header(events: list[Event], **change: object) -> BatchHeader:
    header = BatchHeader(
        v=1, hall=events[0].hall, first_seq=events[0].seq, last_seq=events[-1].seq, count=len(events),
        prev_hash=events[0].prev_hash, last_hash=events[-1].hash, created_at=T0,
    )
    return msgspec.structs.replace(header, **change)


def test_events_of_another_hall_are_hall_mismatch() -> None:
    events = make_chain(3, hall="hall-02")
    batch = _signed_batch(_header(events, hall="hall-01"), events)
    with pytest.raises(HallMismatch, match="hall-02"):
        verify_batch(batch, KEY_A.public_key())
    with pytest.raises(HallMismatch):
        encode_batch(events, "hall-01", KEY_A, created_at=T0)


def test_batch_for_another_topic_hall_is_hall_mismatch() -> None:
    batch = decode_batch(encode_batch(make_chain(2), "hall-01", KEY_A, created_at=T0))
    with pytest.raises(HallMismatch):
        verify_batch(batch, KEY_A.public_key(), expect_hall="hall-02")


def test_signed_but_inconsistent_headers_are_broken_chain() -> None:
    events = make_chain(5, first=10)
    public = KEY_A.public_key()
    with pytest.raises(BrokenChain, match="does not span"):
        verify_batch(_signed_batch(_header(events, count=4), events), public)
    short = _header(events[:4], last_seq=14, count=5)
    with pytest.raises(BrokenChain, match="holds 4"):
        verify_batch(_signed_batch(short, events[:4]), public)
    with pytest.raises(BrokenChain, match="last_hash") as info:
        verify_batch(_signed_batch(_header(events, last_hash=events[3].hash), events), public)
    assert info.value.seq == 14
    with pytest.raises(BrokenChain, match="prev_hash") as info:
        verify_batch(_signed_batch(_header(events, prev_hash="cd" * 32), events), public)
    assert info.value.seq == 10
    gapped = [*events[:2], *events[3:]]
    with pytest.raises(BrokenChain) as info:
        verify_batch(_signed_batch(_header(gapped, first_seq=10, last_seq=13, count=4), gapped), public)
    assert info.value.seq == 13


def test_first_batch_must_start_at_genesis() -> None:
    events = make_chain(2)
    header = _header(events, prev_hash="cd" * 32)
    forged = [msgspec.structs.replace(events[0], prev_hash="cd" * 32), events[1]]
    with pytest.raises(BrokenChain, match="genesis"):
        verify_batch(_signed_batch(header, forged), KEY_A.public_key())


def test_encode_batch_refuses_what_central_would_refuse() -> None:
    events = make_chain(4)
    with pytest.raises(Malformed):
        encode_batch([], "hall-01", KEY_A, created_at=T0)
    with pytest.raises(BrokenChain):
        encode_batch([events[0], events[2]], "hall-01", KEY_A, created_at=T0)
    with pytest.raises(BrokenChain):
        encode_batch([events[0], msgspec.structs.replace(events[1], prev_hash="ab" * 32)], "hall-01", KEY_A,
                     created_at=T0)
    with pytest.raises(Malformed):
        encode_batch(events, "hall-01", KEY_A, created_at=-1)


def test_batch_version_and_shape_errors() -> None:
    payload = encode_batch(make_chain(2), "hall-01", KEY_A, created_at=T0)
    assert payload.count(b'"v":1},"sig"') == 1
    with pytest.raises(UnsupportedVersion, match="version 2"):
        decode_batch(payload.replace(b'"v":1},"sig"', b'"v":2},"sig"'))  # the header's v
    with pytest.raises(UnsupportedVersion, match=r"version 2 at \$\.events\[0\]\.v"):
        decode_batch(payload.replace(b'"v":1}', b'"v":2}', 1))  # the first event's v
    with pytest.raises(Malformed, match="central_time"):
        decode_batch(payload.replace(b'"device":', b'"central_time":5,"device":', 1))
    with pytest.raises(Malformed):
        decode_batch(payload.replace(b'"events":[', b'"events":[],"x":[', 1))
    with pytest.raises(Malformed):
        decode_batch(payload.replace(b'"sig":"', b'"extra":1,"sig":"', 1))
    assert Malformed.log_kind == "format_error"


# --- stored events: batches spliced from the outbox's bytes ---------------------------------------


def _stored(events: list[Event]) -> list[StoredEvent]:
    return [stored_event(encode_event(e), e.seq, e.hash, e.agent_time) for e in events]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains(), TIMES)
def test_encode_batch_stored_is_byte_identical_to_encode_batch(chain: tuple[str, list[Event]], created_at: int) -> None:
    hall, events = chain
    stored = _stored(events)
    assert [(s.seq, s.agent_time, s.prev_hash, s.hash) for s in stored] == [
        (e.seq, e.agent_time, e.prev_hash, e.hash) for e in events]
    payload = encode_batch_stored(stored, hall, KEY_A, created_at=created_at)
    assert payload == encode_batch(events, hall, KEY_A, created_at=created_at)
    batch = decode_batch(payload)  # central's strict decoder and verifier accept it
    verify_batch(batch, KEY_A.public_key(), expect_hall=hall)
    assert batch.events == tuple(events)


def test_stored_event_refuses_every_single_byte_change() -> None:
    """Whatever byte of a stored body is damaged (data, amount, prev_hash, the hash member, the keys,
    the punctuation), the row is refused rather than sent."""
    event = make_chain(3)[2]
    body = encode_event(event)
    for index in range(len(body)):
        for replacement in {body[index] ^ 0x01, ord("0") if body[index] != ord("0") else ord("1")}:
            damaged = body[:index] + bytes([replacement]) + body[index + 1:]
            with pytest.raises(SyncError):
                stored_event(damaged, event.seq, event.hash, event.agent_time)
    assert stored_event(body, event.seq, event.hash, event.agent_time).body is body


def test_stored_event_names_the_damage() -> None:
    event = make_chain(3)[1]
    body = encode_event(event)
    args = (event.seq, event.hash, event.agent_time)
    cases = [
        body.replace(b'"amount":101', b'"amount":901'),  # the money
        body.replace(b'"game":"g-1"', b'"game":"g-2"'),  # a data string
        body.replace(event.prev_hash.encode(), ("0" + event.prev_hash[1:]).encode()),  # the link
    ]
    assert all(case != body for case in cases)
    for damaged in cases:
        with pytest.raises(BrokenChain, match="hash does not match the event's content") as info:
            stored_event(damaged, *args)
        assert info.value.seq == event.seq
    with pytest.raises(BrokenChain) as info:  # the hash column is not the body's hash
        stored_event(body, event.seq, "f" * 64, event.agent_time)
    assert info.value.seq == event.seq
    with pytest.raises(BrokenChain):  # the row is filed under another seq
        stored_event(body, event.seq + 1, event.hash, event.agent_time)
    with pytest.raises(Malformed):  # agent_time column disagrees with the body
        stored_event(body, event.seq, event.hash, event.agent_time + 1)
    with pytest.raises(Malformed):
        stored_event(body[:-1], *args)  # truncated
    with pytest.raises(Malformed):
        stored_event(b"", *args)
    # the hash member moved into data: the rest hashes correctly, but it is no longer the event
    member = b'"hash":"' + event.hash.encode() + b'",'
    moved = body.replace(member, b"").replace(b'"data":{', b'"data":{' + member)
    assert hashlib.sha256(moved.replace(member, b"")).hexdigest() == event.hash
    with pytest.raises(Malformed):
        stored_event(moved, *args)


def test_stored_event_finds_the_top_level_members_past_look_alikes_in_data() -> None:
    """``data`` comes first and may hold keys named hash, prev_hash, seq (even a whole event-like
    object): the members are found from the end, so they do not confuse the check."""
    decoy = {"hash": "a" * 64, "id": str(uuid.UUID(int=9)), "prev_hash": "b" * 64, "seq": 99, "type": "game.bet",
             "v": 1}
    first = seal(bet(amount=5, currency="EUR", hash="c" * 64, prev_hash="d" * 64, seq=7, inner=decoy), GENESIS_HASH)
    second = seal(msgspec.structs.replace(bet(amount=6, currency="EUR", **decoy), seq=2), first.hash)
    for event in (first, second):
        assert encode_event(event).find(b'"hash":"') < encode_event(event).rfind(b'"hash":"')
    stored = _stored([first, second])
    assert [(s.seq, s.prev_hash, s.hash) for s in stored] == [
        (1, GENESIS_HASH, first.hash), (2, first.hash, second.hash)]
    payload = encode_batch_stored(stored, "hall-01", KEY_A, created_at=T0)
    assert payload == encode_batch([first, second], "hall-01", KEY_A, created_at=T0)
    verify_batch(decode_batch(payload), KEY_A.public_key(), expect_hall="hall-01")
    # the hash member moved into a nested look-alike of the event's tail: refused, the tail must end the body
    tail = {k: v for k, v in decoy.items() if k != "hash"}
    third = seal(msgspec.structs.replace(bet(amount=7, currency="EUR", inner=tail), seq=3), second.hash)
    body, member = encode_event(third), b'"hash":"' + third.hash.encode() + b'",'
    moved = body.replace(member, b"").replace(b'"inner":{', b'"inner":{' + member)
    assert moved != body and hashlib.sha256(moved.replace(member, b"")).hexdigest() == third.hash
    with pytest.raises(Malformed):
        stored_event(moved, 3, third.hash, third.agent_time)
    assert stored_event(body, 3, third.hash, third.agent_time).prev_hash == second.hash


def test_encode_batch_stored_refuses_what_encode_batch_refuses() -> None:
    stored = _stored(make_chain(4))
    with pytest.raises(Malformed):
        encode_batch_stored([], "hall-01", KEY_A, created_at=T0)
    with pytest.raises(BrokenChain, match="expected seq 2"):
        encode_batch_stored([stored[0], stored[2]], "hall-01", KEY_A, created_at=T0)
    relinked = msgspec.structs.replace(stored[1], prev_hash="ab" * 32)
    with pytest.raises(BrokenChain, match="prev_hash does not link"):
        encode_batch_stored([stored[0], relinked], "hall-01", KEY_A, created_at=T0)
    with pytest.raises(Malformed):
        encode_batch_stored(stored, "hall-01", KEY_A, created_at=-1)
    with pytest.raises(Malformed):
        encode_batch_stored(stored, "hall/01", KEY_A, created_at=T0)  # not a hall ID


def test_events_within_limit_is_a_prefix_whose_batch_fits() -> None:
    """Issue 16: the count the replicator sends. Its frame estimate is an upper bound, so the payload
    never passes the limit, and at most that bound (1 KiB) of room is left unused."""
    hall = "h" * 64  # the longest hall ID makes the longest header

    def size(n: int) -> int:
        return len(encode_batch_stored(stored[:n], hall, KEY_A, created_at=2**62))

    stored = _stored(make_chain(50, hall=hall))
    for limit in range(size(1), size(50) + 2048, 97):
        fit = events_within_limit(stored, limit)
        assert fit == 0 or size(fit) <= limit
        assert fit == 50 or size(fit + 1) > limit - 1024
    assert events_within_limit(stored, len(stored[0].body)) == 0  # the first alone is too big: nothing fits


def test_no_encoder_builds_a_batch_above_the_message_limit() -> None:
    big = seal(UnsealedEvent(seq=1, id=str(uuid.UUID(int=1)), hall="hall-01", device="egm-001", type="device.status",
                             device_time=None, agent_time=T0, data={"note": "n" * MAX_MESSAGE_BYTES}), GENESIS_HASH)
    with pytest.raises(Malformed, match=f"exceeds the limit of {MAX_MESSAGE_BYTES}"):
        encode_batch([big], "hall-01", KEY_A, created_at=T0)
    with pytest.raises(Malformed, match=f"exceeds the limit of {MAX_MESSAGE_BYTES}"):
        encode_batch_stored(_stored([big]), "hall-01", KEY_A, created_at=T0)
