"""The agent's durable outbox: every game and money event, numbered, hash-chained and committed to
SQLite before anyone is told it happened; the only copy that counts until HQ acks it.

Public API: :class:`Outbox` (``start``/``stop``, ``append``, ``read_unacked``, ``read_unacked_stored``,
``mark_acked``, ``prune``, ``status``), :class:`OutboxUnavailable`, and :class:`DraftLike` (what ``append`` takes).
"""

from .drafts import DraftLike
from .errors import ChainMismatch, HallMismatch, OutboxError, OutboxUnavailable
from .outbox import Outbox, State
from .store import ChainState, OutboxStore, inspect_outbox

__all__ = ["ChainMismatch", "ChainState", "DraftLike", "HallMismatch", "Outbox", "OutboxError", "OutboxStore",
           "OutboxUnavailable", "State", "inspect_outbox"]
