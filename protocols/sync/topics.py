"""MQTT topic names, built and parsed strictly.

``hallsync/v1/halls/{hall}/{kind}``. Agents publish ``batches``, ``command-results`` and ``status``;
central publishes ``acks``, ``resend``, ``commands`` and ``standing`` (retained standing data). Hall IDs are limited to
``[A-Za-z0-9_-]{1,64}`` because they become topic levels and broker ACL patterns: a ``+``, ``#`` or
``/`` in a hall ID would widen a subscription or an ACL to other halls.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from .errors import BadTopic
from .fields import HALL_RE

PREFIX: Final = "hallsync/v1/halls"
TopicKind = Literal["batches", "acks", "resend", "commands", "command-results", "status", "standing"]
TOPIC_KINDS: Final[tuple[str, ...]] = get_args(TopicKind)
AGENT_PUBLISHES: Final = frozenset({"batches", "command-results", "status"})
CENTRAL_PUBLISHES: Final = frozenset({"acks", "resend", "commands", "standing"})


def check_hall_id(hall: str) -> str:
    """Return ``hall`` if it is a valid hall ID, else raise :class:`BadTopic`."""
    if type(hall) is not str or HALL_RE.match(hall) is None:
        raise BadTopic(f"hall ID {hall!r} outside [A-Za-z0-9_-]{{1,64}}")
    return hall


def _check_kind(kind: str) -> str:
    if kind not in TOPIC_KINDS:
        raise BadTopic(f"unknown topic kind {kind!r}; one of {', '.join(TOPIC_KINDS)}")
    return kind


def topic(hall: str, kind: str) -> str:
    """The topic one hall's messages of ``kind`` travel on."""
    return f"{PREFIX}/{check_hall_id(hall)}/{_check_kind(kind)}"


def parse_topic(name: str) -> tuple[str, str]:
    """(hall, kind) of a concrete topic; wildcards, extra levels or bad IDs raise :class:`BadTopic`."""
    if type(name) is not str:
        raise BadTopic(f"topic must be str, not {type(name).__name__}")
    prefix, sep, rest = name.partition(PREFIX + "/")
    if prefix or not sep:
        raise BadTopic(f"topic {name!r} is not under {PREFIX}/")
    parts = rest.split("/")
    if len(parts) != 2:
        raise BadTopic(f"topic {name!r} must be {PREFIX}/<hall>/<kind>")
    return check_hall_id(parts[0]), _check_kind(parts[1])


def subscription(kind: str) -> str:
    """The filter for ``kind`` from every hall, e.g. ``hallsync/v1/halls/+/status``."""
    return f"{PREFIX}/+/{_check_kind(kind)}"


def shared_subscription(group: str, kind: str = "batches") -> str:
    """``$share/{group}/hallsync/v1/halls/+/{kind}``: one of the group's workers gets each message.

    The broker may deliver consecutive batches of one hall to different workers (round robin), so
    workers must not assume per-hall ordering; the seq range in each batch makes that safe.
    """
    if type(group) is not str or HALL_RE.match(group) is None:
        raise BadTopic(f"share group {group!r} outside [A-Za-z0-9_-]{{1,64}}")
    return f"$share/{group}/{subscription(kind)}"
