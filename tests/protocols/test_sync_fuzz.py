"""Hostile input: every decoder raises only SyncError subclasses, never anything else."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.sync import (
    GENESIS_HASH,
    Ack,
    Command,
    CommandResult,
    ResendRequest,
    Status,
    SyncError,
    UnsealedEvent,
    decode_ack,
    decode_batch,
    decode_command,
    decode_command_result,
    decode_event,
    decode_resend,
    decode_status,
    encode_ack,
    encode_batch,
    encode_command,
    encode_command_result,
    encode_event,
    encode_resend,
    encode_status,
    generate_private_key,
    seal,
    verify_batch,
)

KEY = generate_private_key()
PUBLIC = KEY.public_key()
T0 = 1_767_225_600_000_000


def _decode_and_verify_batch(payload: bytes) -> object:
    batch = decode_batch(payload)
    verify_batch(batch, PUBLIC)
    return batch


DECODERS: dict[str, Callable[[bytes], object]] = {
    "event": decode_event,
    "batch": _decode_and_verify_batch,
    "ack": lambda p: decode_ack(p, PUBLIC),
    "resend": lambda p: decode_resend(p, PUBLIC),
    "command": lambda p: decode_command(p, PUBLIC),
    "command-result": lambda p: decode_command_result(p, PUBLIC),
    "status": lambda p: decode_status(p, PUBLIC),
}


def _valid_payloads() -> dict[str, bytes]:
    prev, events = GENESIS_HASH, []
    for seq in (1, 2, 3):
        event = seal(UnsealedEvent(
            seq=seq, id=str(uuid.UUID(int=seq)), hall="hall-01", device="egm-001", type="game.bet",
            device_time=None, agent_time=T0, data={"amount": 5, "currency": "EUR", "tags": ["a", {"b": None}]},
        ), prev)
        events.append(event)
        prev = event.hash
    uid = "6f1c2a9e-3b7d-4c1e-9a5f-0d2b8e4c7a13"
    return {
        "event": encode_event(events[0]),
        "batch": encode_batch(events, "hall-01", KEY, created_at=T0),
        "ack": encode_ack(Ack(v=1, hall="hall-01", acked_through_seq=3, last_hash=prev, created_at=T0), KEY),
        "resend": encode_resend(ResendRequest(v=1, hall="hall-01", from_seq=1, to_seq=3, reason="gap",
                                              created_at=T0), KEY),
        "command": encode_command(Command(v=1, id=uid, hall="hall-01", device="egm-001", action="disable_machine",
                                          game=None, params={"why": "test"}, issued_at=T0, expires_at=T0 + 1), KEY),
        "command-result": encode_command_result(CommandResult(v=1, id=uid, hall="hall-01", status="applied",
                                                              detail="", at=T0), KEY),
        "status": encode_status(Status(v=1, hall="hall-01", online=True, session=1, at=T0), KEY),
    }


VALID = _valid_payloads()
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)


def _only_sync_errors(decode: Callable[[bytes], object], payload: object) -> None:
    try:
        decode(payload)  # type: ignore[arg-type]
    except SyncError:
        pass


def test_valid_payloads_decode() -> None:
    for name, decode in DECODERS.items():
        decode(VALID[name])


@pytest.mark.parametrize("name", list(DECODERS))
def test_random_bytes_raise_only_sync_errors(name: str) -> None:
    @settings(max_examples=80, deadline=None)
    @given(st.binary(max_size=300))
    def check(payload: bytes) -> None:
        _only_sync_errors(DECODERS[name], payload)

    check()


@pytest.mark.parametrize("name", list(DECODERS))
def test_random_json_raises_only_sync_errors(name: str) -> None:
    @settings(max_examples=80, deadline=None)
    @given(ANY_JSON)
    def check(value: object) -> None:
        _only_sync_errors(DECODERS[name], json.dumps(value).encode())

    check()


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


@pytest.mark.parametrize("name", list(DECODERS))
def test_valid_messages_with_one_value_replaced_raise_only_sync_errors(name: str) -> None:
    """Structure-aware fuzzing: any node of a valid message replaced by arbitrary JSON."""
    original = json.loads(VALID[name])
    paths = _paths(original)[1:]

    @settings(max_examples=120, deadline=None)
    @given(st.sampled_from(paths), ANY_JSON)
    def check(path: tuple[object, ...], value: object) -> None:
        mutated = json.loads(VALID[name])
        node = mutated
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        _only_sync_errors(DECODERS[name], json.dumps(mutated).encode())

    check()


@pytest.mark.parametrize("name", list(DECODERS))
@pytest.mark.parametrize("payload", [
    b"", b"null", b"[]", b"{}", b"\xef\xbb\xbf{}", b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5000,
    '{"v":1}', None, 12, bytearray(b"{}"), memoryview(b"{}"), b'"\\ud800"', b"\xff\xfe",
], ids=lambda p: f"memoryview({bytes(p)!r})" if isinstance(p, memoryview) else repr(p)[:20])
def test_odd_inputs_raise_only_sync_errors(name: str, payload: object) -> None:
    with pytest.raises(SyncError):
        DECODERS[name](payload)  # type: ignore[arg-type]
