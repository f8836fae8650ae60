"""The one error family of the sync protocol.

Every decoder and verifier raises only subclasses of :class:`SyncError` (itself a ``ValueError``), so
a consumer can catch one class and still never crash on hostile input. The subclasses exist because
central treats them differently: a malformed payload is a ``format_error`` in the integration log,
while a bad signature, a broken chain or a hall mismatch is ``rejected`` (someone forged, altered or
misrouted data). ``log_kind`` carries that mapping so central does not have to re-derive it.
"""

from __future__ import annotations

from typing import ClassVar


class SyncError(ValueError):
    """Base of every error this package raises on bad input."""

    log_kind: ClassVar[str] = "format_error"


class Malformed(SyncError):
    """Bytes that are not a valid message: bad JSON, wrong types, unknown fields, floats, bad amounts."""

    log_kind: ClassVar[str] = "format_error"


class UnsupportedVersion(Malformed):
    """A well-formed-looking message whose ``v`` this build does not speak (a newer or older peer)."""


class BadTopic(Malformed):
    """An MQTT topic, hall ID or group name outside the documented grammar."""


class InvalidKey(SyncError):
    """Key material that is not an Ed25519 key in the documented PEM form."""


class BadSignature(SyncError):
    """The Ed25519 signature does not verify under the key the caller trusts for that sender."""

    log_kind: ClassVar[str] = "rejected"


class BrokenChain(SyncError):
    """The hash chain or the seq sequence does not hold; ``seq`` names the first event where it breaks."""

    log_kind: ClassVar[str] = "rejected"

    def __init__(self, message: str, seq: int | None = None) -> None:
        super().__init__(message if seq is None else f"seq {seq}: {message}")
        self.seq = seq


class HallMismatch(SyncError):
    """A message names a hall other than the one it claims or arrived for (misrouting or forgery)."""

    log_kind: ClassVar[str] = "rejected"
