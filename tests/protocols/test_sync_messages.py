"""Acks, resend requests, commands, command results and presence status (protocols.sync)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.sync import (
    ACTIONS,
    RESULT_STATUSES,
    Ack,
    BadSignature,
    Command,
    CommandResult,
    HallMismatch,
    Malformed,
    ResendRequest,
    Status,
    SyncError,
    UnsupportedVersion,
    command_expired,
    decode_ack,
    decode_command,
    decode_command_result,
    decode_resend,
    decode_status,
    encode_ack,
    encode_command,
    encode_command_result,
    encode_resend,
    encode_status,
    generate_private_key,
)

CENTRAL = generate_private_key()
HALL = generate_private_key()
OTHER = generate_private_key()
T0 = 1_767_225_600_000_000
HALLS = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
IDENTS = st.from_regex(r"[A-Za-z0-9_.:-]{1,16}", fullmatch=True)
TIMES = st.integers(0, 2**62)
SEQS = st.integers(1, 2**63 - 1)
HASHES = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
PARAMS = st.dictionaries(IDENTS, st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
                         max_size=4)

acks = st.builds(Ack, v=st.just(1), hall=HALLS, acked_through_seq=st.integers(0, 2**63 - 1), last_hash=HASHES,
                 created_at=TIMES)
resends = st.tuples(SEQS, SEQS).flatmap(lambda pair: st.builds(
    ResendRequest, v=st.just(1), hall=HALLS, from_seq=st.just(min(pair)), to_seq=st.just(max(pair)),
    reason=st.text(max_size=50), created_at=TIMES))


@st.composite
def commands(draw: st.DrawFn) -> Command:
    action = draw(st.sampled_from(ACTIONS))
    needs_device = action in {"disable_machine", "enable_machine", "disable_game", "enable_game"}
    issued = draw(TIMES)
    return Command(
        v=1, id=str(draw(st.uuids())), hall=draw(HALLS),
        device=draw(IDENTS) if needs_device else draw(st.none() | IDENTS), action=action,
        game=draw(IDENTS) if action in {"disable_game", "enable_game"} else None, params=draw(PARAMS),
        issued_at=issued, expires_at=issued + draw(st.integers(1, 10**9)),
    )


results = st.builds(CommandResult, v=st.just(1), id=st.uuids().map(str), hall=HALLS,
                    status=st.sampled_from(RESULT_STATUSES), detail=st.text(max_size=80), at=TIMES)
statuses = st.builds(Status, v=st.just(1), hall=HALLS, online=st.booleans(), session=st.integers(0, 2**63 - 1),
                     at=TIMES)

SIGNED = [
    ("ack", acks, encode_ack, decode_ack, CENTRAL),
    ("resend", resends, encode_resend, decode_resend, CENTRAL),
    ("command", commands(), encode_command, decode_command, CENTRAL),
    ("command-result", results, encode_command_result, decode_command_result, HALL),
]


@pytest.mark.parametrize(("name", "strategy", "encode", "decode", "key"), SIGNED, ids=[s[0] for s in SIGNED])
def test_signed_messages_round_trip_and_resist_tampering(
    name: str, strategy: st.SearchStrategy[msgspec.Struct], encode: Callable[..., bytes],
    decode: Callable[..., msgspec.Struct], key: object,
) -> None:
    @settings(max_examples=40, deadline=None)
    @given(strategy, st.data())
    def check(message: msgspec.Struct, data: st.DataObject) -> None:
        payload = encode(message, key)
        public = key.public_key()  # type: ignore[attr-defined]
        assert decode(payload, public) == message
        assert decode(payload, public, expect_hall=message.hall) == message  # type: ignore[attr-defined]
        with pytest.raises(BadSignature):
            decode(payload, OTHER.public_key())
        position = data.draw(st.integers(0, len(payload) - 1))
        altered = bytearray(payload)
        altered[position] ^= data.draw(st.sampled_from([0x01, 0x20, 0x04]))
        try:
            got = decode(bytes(altered), public, expect_hall=message.hall)  # type: ignore[attr-defined]
        except (BadSignature, Malformed, HallMismatch):
            return
        # The signature covers the message, not its spelling: a flip that only changes how the same
        # value is written (the case of a hex digit in a \u escape) decodes to the very same message.
        assert got == message

    check()


def test_signed_message_for_another_hall_is_hall_mismatch() -> None:
    ack = Ack(v=1, hall="hall-01", acked_through_seq=5, last_hash="ab" * 32, created_at=T0)
    with pytest.raises(HallMismatch):
        decode_ack(encode_ack(ack, CENTRAL), CENTRAL.public_key(), expect_hall="hall-02")


def test_signature_of_one_kind_does_not_verify_as_another() -> None:
    """Domain separation: the same body bytes under another context must not verify."""
    from protocols.sync.signing import sign, verify

    body = b'{"v":1}'
    with pytest.raises(BadSignature):
        verify("command", body, sign("ack", body, CENTRAL), CENTRAL.public_key())


def _command(**change: object) -> Command:
    command = Command(v=1, id="6f1c2a9e-3b7d-4c1e-9a5f-0d2b8e4c7a13", hall="hall-01", device="egm-001",
                      action="disable_game", game="g-17", params={}, issued_at=T0, expires_at=T0 + 60_000_000)
    return msgspec.structs.replace(command, **change)


@pytest.mark.parametrize("change", [
    {"game": None}, {"action": "disable_machine"}, {"device": None}, {"expires_at": T0}, {"params": {"limit": 1.5}},
    {"params": {"bad key": 1}}, {"action": "reboot"}, {"hall": "hall/01"}, {"id": "nope"}, {"v": 2},
])
def test_commands_outside_the_rules_are_refused_by_sender_and_receiver(change: dict[str, object]) -> None:
    bad = _command(**change)
    with pytest.raises(Malformed):
        encode_command(bad, CENTRAL)
    payload = msgspec.json.encode({"body": msgspec.structs.asdict(bad), "sig": "00" * 64})
    with pytest.raises(Malformed):
        decode_command(payload, CENTRAL.public_key())


def test_command_expiry_uses_the_callers_clock() -> None:
    command = _command()
    assert not command_expired(command, T0 + 59_999_999)
    assert command_expired(command, T0 + 60_000_000)


def test_resend_range_must_be_ordered() -> None:
    with pytest.raises(Malformed, match="from_seq"):
        encode_resend(ResendRequest(v=1, hall="h", from_seq=9, to_seq=3, reason="gap", created_at=T0), CENTRAL)


def test_unknown_version_of_a_signed_message_is_named() -> None:
    ack = Ack(v=1, hall="hall-01", acked_through_seq=5, last_hash="ab" * 32, created_at=T0)
    payload = encode_ack(ack, CENTRAL).replace(b'"v":1', b'"v":7')
    with pytest.raises(UnsupportedVersion, match="7"):
        decode_ack(payload, CENTRAL.public_key())
    future = b'{"body":{"v":2,"hall":"hall-01","new_field":[]},"sig":"' + b"00" * 64 + b'"}'
    with pytest.raises(UnsupportedVersion, match="version 2"):
        decode_ack(future, CENTRAL.public_key())


@settings(max_examples=60, deadline=None)
@given(statuses)
def test_status_round_trip(status: Status) -> None:
    assert decode_status(encode_status(status, HALL), HALL.public_key()) == status
    assert decode_status(encode_status(status, HALL), HALL.public_key(), expect_hall=status.hall) == status


def test_status_checks() -> None:
    status = Status(v=1, hall="hall-01", online=False, session=3, at=T0)
    pub = HALL.public_key()
    with pytest.raises(HallMismatch):
        decode_status(encode_status(status, HALL), pub, expect_hall="hall-02")
    with pytest.raises(Malformed):
        encode_status(msgspec.structs.replace(status, hall="+"), HALL)
    with pytest.raises(Malformed):
        decode_status(b'{"body":{"v":1,"hall":"hall-01","online":1,"session":3,"at":0},"sig":"' + b"00" * 64 + b'"}',
                      pub)
    with pytest.raises(SyncError):
        decode_status(encode_status(status, HALL) + b"x", pub)


def test_status_unsigned_or_signed_by_another_key_is_rejected() -> None:
    """The forgery that pinned a hall offline: a bare status with a huge session; and a status signed
    with some other key. Both are BadSignature, which central logs as ``rejected``."""
    forged = b'{"at":0,"hall":"hall-01","online":false,"session":9223372036854775807,"v":1}'
    with pytest.raises(BadSignature, match="unsigned") as unsigned:
        decode_status(forged, HALL.public_key(), expect_hall="hall-01")
    assert unsigned.value.log_kind == "rejected"
    other = encode_status(Status(v=1, hall="hall-01", online=False, session=2**63 - 1, at=T0), OTHER)
    with pytest.raises(BadSignature):
        decode_status(other, HALL.public_key(), expect_hall="hall-01")
    with pytest.raises(Malformed):  # neither form stays a format error
        decode_status(b'{"online":false}', HALL.public_key())
