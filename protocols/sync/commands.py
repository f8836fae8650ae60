"""Commands from central to a hall, and the hall's signed results (issue 04 builds on these).

A command is signed by central, carries an ``id`` (the agent applies each id at most once) and an
``expires_at`` (a command delayed in a queue must not switch a machine off hours later).
An expiry only helps if it is near: the agent also refuses (``rejected``) a command issued in its
future beyond a clock-skew bound or valid longer than a lifetime bound (:func:`command_out_of_bounds`),
so a command signed "valid for a year" or "issued tomorrow" cannot wait at the broker for its moment.
Central never issues a command longer than :data:`MAX_COMMAND_LIFETIME_SECONDS`, the agent's default bound.
The result is signed by the hall so central's audit trail cannot be fed forged outcomes.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeGuard, get_args

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .data import check_object
from .envelope import SignedKind
from .errors import Malformed
from .fields import HallId, Ident, Micros, Text, UuidStr, Version

Action = Literal[
    "disable_machine", "enable_machine", "disable_game", "enable_game", "set_limit", "set_config", "update_catalog"
]
ACTIONS: Final[tuple[str, ...]] = get_args(Action)


def is_action(value: str) -> TypeGuard[Action]:
    """Whether ``value`` names a command action (narrows a checked request field to :data:`Action`)."""
    return value in ACTIONS


GAME_ACTIONS: Final = frozenset({"disable_game", "enable_game"})
DEVICE_ACTIONS: Final = frozenset({"disable_machine", "enable_machine", "disable_game", "enable_game"})

ResultStatus = Literal["applied", "failed", "expired", "rejected"]
RESULT_STATUSES: Final[tuple[str, ...]] = get_args(ResultStatus)

MAX_CLOCK_SKEW_SECONDS: Final = 300
"""The agent's default: a command ``issued_at`` more than this in the agent's future is refused.
Central stamps ``issued_at`` with its own clock, so this is how far the two clocks may disagree (NTP keeps
them within a second; five minutes leaves room for a hall whose NTP is broken, not for a post-dated command)."""
MAX_COMMAND_LIFETIME_SECONDS: Final = 900
"""The agent's default bound on ``expires_at - issued_at``, and central's largest ``ttl_seconds``
(so every command central issues is accepted by an agent on its defaults)."""

_S = {"frozen": True, "kw_only": True, "forbid_unknown_fields": True}


class Command(msgspec.Struct, **_S):
    """An instruction for one hall (and usually one device). All fields are always on the wire."""

    v: Version
    id: UuidStr
    hall: HallId
    device: Ident | None
    action: Action
    game: Ident | None
    params: dict[str, Any]
    issued_at: Micros
    expires_at: Micros


class CommandResult(msgspec.Struct, **_S):
    """The hall's answer to command ``id``."""

    v: Version
    id: UuidStr
    hall: HallId
    status: ResultStatus
    detail: Text
    at: Micros


def _check_command(command: Command) -> None:
    check_object(command.params, "params")
    if command.action in DEVICE_ACTIONS and command.device is None:
        raise Malformed(f"command: {command.action} needs a device")
    if (command.action in GAME_ACTIONS) != (command.game is not None):
        raise Malformed(f"command: game is required for {sorted(GAME_ACTIONS)} and only for them")
    if command.expires_at <= command.issued_at:
        raise Malformed("command: expires_at must be after issued_at")


COMMAND: Final = SignedKind("command", Command, _check_command)
COMMAND_RESULT: Final = SignedKind("command-result", CommandResult)


def command_expired(command: Command, now: int) -> bool:
    """True once ``now`` (caller's clock, µs UTC) reaches ``expires_at``: answer ``expired``, don't apply."""
    return now >= command.expires_at


def command_out_of_bounds(command: Command, now: int, *, max_skew: int, max_lifetime: int) -> str | None:
    """Why the agent refuses ``command`` (answered ``rejected``, never applied), or None when it is in bounds.

    ``now`` is the agent's clock, ``max_skew`` and ``max_lifetime`` are µs: ``issued_at`` may be at most
    ``max_skew`` ahead of ``now``, and the command valid for at most ``max_lifetime`` after ``issued_at``.
    """
    ahead = command.issued_at - now
    if ahead > max_skew:
        return (f"issued_at is {ahead / 1e6:.0f} s in this agent's future, more than the allowed clock skew "
                f"of {max_skew / 1e6:.0f} s (check both clocks)")
    lifetime = command.expires_at - command.issued_at
    if lifetime > max_lifetime:
        return (f"valid for {lifetime / 1e6:.0f} s, longer than this agent accepts "
                f"({max_lifetime / 1e6:.0f} s)")
    return None


def encode_command(command: Command, central_key: Ed25519PrivateKey) -> bytes:
    """Sign and encode a command (central side)."""
    return COMMAND.encode(command, central_key)


def decode_command(payload: bytes, central_key: Ed25519PublicKey, *, expect_hall: str | None = None) -> Command:
    """Decode and verify a command (agent side); does not check expiry (see :func:`command_expired`)."""
    return COMMAND.decode(payload, central_key, expect_hall)


def encode_command_result(result: CommandResult, hall_key: Ed25519PrivateKey) -> bytes:
    """Sign and encode a command result (agent side)."""
    return COMMAND_RESULT.encode(result, hall_key)


def decode_command_result(
    payload: bytes, hall_key: Ed25519PublicKey, *, expect_hall: str | None = None
) -> CommandResult:
    """Decode and verify a command result (central side, with the key of the hall in the topic)."""
    return COMMAND_RESULT.decode(payload, hall_key, expect_hall)
