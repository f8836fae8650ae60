"""Commands central sends to halls (design.md, Delivery contract rule 5): shared bits of API and service.

The HTTP API builds, signs, stores and publishes a command (see :mod:`central.api.app`); the ingest
service receives the hall's signed result and moves the stored status (see :mod:`central.service`).
Publishing goes through a :data:`CommandPublisher` given to ``build_app``: it returns once the broker
acknowledged (QoS 1 PUBACK). It raises :class:`CommandNotPublished` when the message certainly did
not leave central (no broker connection): the command is then ``failed``. Any other exception leaves
it ``pending`` with the error as detail, because the broker may hold it anyway (a PUBACK lost with the
connection): the hall's result, or the expiry, settles it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from protocols.sync import MAX_COMMAND_LIFETIME_SECONDS

CommandPublisher = Callable[[str, bytes], Awaitable[None]]
"""``await publish(topic, payload)``: QoS 1, returns after the broker's PUBACK."""

USER_ACTIONS: Final = ("disable_machine", "enable_machine", "disable_game", "enable_game")
"""The actions ``POST /commands`` accepts (design.md); the wire format knows more for later slices."""

DEFAULT_TTL_SECONDS: Final = 300
MAX_TTL_SECONDS: Final = MAX_COMMAND_LIFETIME_SECONDS
"""15 minutes: an agent on its defaults refuses a command valid for longer (``rejected``), and a command
that could not reach its machine within that time is better issued again than applied by surprise."""

RESULT_TO_STATUS: Final = {"applied": "applied", "failed": "failed", "expired": "expired", "rejected": "failed"}
"""A hall's result status → the stored command status (a command the agent rejected has failed)."""


class CommandNotPublished(Exception):
    """The publisher knows the command did not reach the broker (e.g. central is not connected)."""


def result_detail(result_status: str, detail: str) -> str:
    """The stored detail for a hall's result: a rejection says so, since it is stored as ``failed``."""
    if result_status == "rejected":
        return f"rejected by the hall: {detail}" if detail else "rejected by the hall"
    return detail
