"""MQTT topic names and Ed25519 key helpers (protocols.sync)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from protocols.sync import (
    TOPIC_KINDS,
    BadTopic,
    InvalidKey,
    SyncError,
    fingerprint,
    generate_private_key,
    parse_topic,
    private_key_from_pem,
    private_key_to_pem,
    public_key_from_pem,
    public_key_to_pem,
    shared_subscription,
    subscription,
    topic,
)


@pytest.mark.parametrize("kind", TOPIC_KINDS)
def test_topic_build_and_parse(kind: str) -> None:
    name = topic("hall-01", kind)
    assert name == f"hallsync/v1/halls/hall-01/{kind}"
    assert parse_topic(name) == ("hall-01", kind)


@given(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), st.sampled_from(TOPIC_KINDS))
def test_topic_round_trip_for_any_valid_hall(hall: str, kind: str) -> None:
    assert parse_topic(topic(hall, kind)) == (hall, kind)


@pytest.mark.parametrize("hall", [
    "+", "#", "a/b", "hall+", "hall#", "", "x" * 65, "hall 01", "$SYS", "hall.01", "hällе", "hall\n", "hall\x00",
])
def test_hall_ids_that_would_widen_topics_or_acls_are_refused(hall: str) -> None:
    with pytest.raises(BadTopic):
        topic(hall, "batches")
    with pytest.raises(BadTopic):
        parse_topic(f"hallsync/v1/halls/{hall}/batches")


@pytest.mark.parametrize("name", [
    "hallsync/v1/halls/+/batches", "hallsync/v1/halls/#", "hallsync/v1/halls/h1/unknown",
    "hallsync/v1/halls/h1/batches/extra", "hallsync/v2/halls/h1/batches", "/hallsync/v1/halls/h1/batches",
    "x/hallsync/v1/halls/h1/batches", "hallsync/v1/halls/h1", "hallsync/v1/halls//batches", "", None,
])
def test_parse_topic_is_strict(name: object) -> None:
    with pytest.raises(BadTopic):
        parse_topic(name)  # type: ignore[arg-type]


def test_subscriptions() -> None:
    assert subscription("status") == "hallsync/v1/halls/+/status"
    assert shared_subscription("central") == "$share/central/hallsync/v1/halls/+/batches"
    assert shared_subscription("ingest_2", "command-results") == "$share/ingest_2/hallsync/v1/halls/+/command-results"
    for bad in ("", "a/b", "+", "#"):
        with pytest.raises(BadTopic):
            shared_subscription(bad)
    with pytest.raises(BadTopic):
        topic("hall-01", "events")


def test_keys_round_trip_through_pem() -> None:
    key = generate_private_key()
    pem = private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = private_key_from_pem(pem)
    public_pem = public_key_to_pem(key.public_key())
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    public = public_key_from_pem(public_pem)
    public.verify(loaded.sign(b"x"), b"x")
    assert fingerprint(key) == fingerprint(loaded) == fingerprint(public)
    assert fingerprint(key).startswith("ed25519:") and len(fingerprint(key)) == len("ed25519:") + 16
    assert fingerprint(generate_private_key()) != fingerprint(key)


def test_bad_key_material_is_invalid_key() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_private = ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    ec_public = ec_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    encrypted = generate_private_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    key = generate_private_key()
    for bad in (b"", b"garbage", ec_private, encrypted, public_key_to_pem(key.public_key())):
        with pytest.raises(InvalidKey):
            private_key_from_pem(bad)
    for bad in (b"", b"garbage", ec_public, private_key_to_pem(key)):
        with pytest.raises(InvalidKey):
            public_key_from_pem(bad)
    assert issubclass(InvalidKey, SyncError)
