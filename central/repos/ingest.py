"""Ingest: the verified events of every hall's chain (stored with their rollups in one
transaction), the signed batch headers kept with them, and the integration log.

The records and the repository's interface are backend-neutral: each backend implements
:class:`IngestRepository` with its own SQL (SQLite in :mod:`central.store`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

from central.staging import MissedRecord, StagedEvents
from protocols.sync import Event

LOG_KINDS: Final = ("duplicate", "rejected", "format_error", "missed", "resend", "connection", "command", "manual")
"""Kinds of integration-log rows (design.md, ``GET /integration-log``)."""


LogKind = Literal["duplicate", "rejected", "format_error", "missed", "resend", "connection", "command", "manual"]


IngestStatus = Literal["stored", "duplicate", "gap", "conflict"]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One integration-log row. ``hall``/``device`` are None when unknown (e.g. an unparsable topic)."""

    kind: LogKind
    detail: str
    time: int
    hall: str | None = None
    device: str | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What :meth:`ingest_events` did, decided inside its transaction.

    * ``stored``: the new events (``stored`` of them; ``skipped`` already held) are committed with
      their rollups; ``last_seq``/``last_hash`` are the new contiguous end.
    * ``duplicate``: every event was already held with the same hashes; nothing changed.
    * ``gap``: the batch starts after ``last_seq + 1``; nothing changed.
    * ``conflict``: the batch disagrees with a stored hash at ``conflict_seq`` (a forked or forged
      chain); nothing changed.

    ``money_errors`` lists (seq, reason) of stored events whose money could not be counted by the
    shared rule (e.g. a transfer without a direction): they are stored, counted as zero, and must be
    logged so the difference is visible, never silent.
    """

    status: IngestStatus
    last_seq: int
    last_hash: str
    stored: int = 0
    skipped: int = 0
    conflict_seq: int | None = None
    money_errors: tuple[tuple[int, str], ...] = field(default_factory=tuple)
    missed: tuple[MissedRecord, ...] = ()
    """The hall's ``missed`` records among the newly stored events (for the integration log)."""


@dataclass(frozen=True, slots=True)
class SignedHeader:
    """A batch header exactly as its hall signed it: kept so an export can carry the hall's signature.

    ``header`` is the canonical JSON of :class:`protocols.sync.BatchHeader`; ``sig`` the Ed25519
    signature (hex) over ``hallsync/v1/batch`` LF ``header``; ``public_key_pem`` the hall key it was
    checked with (the hall's key may be replaced later; old signatures still verify with this one).
    """

    hall: str
    first_seq: int
    last_seq: int
    header: str
    sig: str
    public_key_pem: str = ""
    """Filled in by the store from the hall's registered key when the batch is stored."""


@runtime_checkable
class IngestRepository(Protocol):
    """Stores verified runs of a hall's chain and the integration log, and reads them back."""

    async def ingest_events(self, hall: str, events: Sequence[Event], *, central_time: int,
                            signed: SignedHeader | None = None) -> IngestResult:
        """Store a verified, contiguous run of one hall's chain, idempotently, with its rollups.

        In one transaction: read the hall's chain state (locked against concurrent writers), decide
        duplicate / gap / conflict / new tail, insert the new events (unique ``(hall, seq)``), add
        their money to the rollups and update devices and the chain state, commit. The caller has
        verified the signature and the chain links inside ``events``. ``signed`` (the batch's signed
        header) is kept in the same transaction when the batch stored new events (for exports).
        """
        ...

    async def ingest_staged(self, staged: StagedEvents, *, signed: SignedHeader | None = None) -> IngestResult:
        """:meth:`ingest_events` for a run staged ahead with :func:`central.staging.stage_events`.

        Ingest stages each batch on the thread that verified it, so the single writer only checks
        the chain against stored state and writes; ``staged.central_time`` is the events' central time.
        """
        ...

    async def log(self, entries: Sequence[LogEntry]) -> None:
        """Append integration-log rows (one transaction)."""
        ...

    async def wait_chain_moved(self, hall: str, past_seq: int, timeout: float) -> bool:
        """Until ``hall``'s stored chain end is past ``past_seq`` (True) or ``timeout`` seconds pass (False),
        whichever process stores it: how a worker holding a batch ahead of a gap learns that another
        worker closed it (:mod:`central.store.chain_signals`). A False is no proof of anything: look."""
        ...

    async def ask_holders(self, hall: str, seq: int, timeout: float) -> bool:
        """Whether an ingest worker (of any process on this database) has a batch of ``hall`` covering
        ``seq`` received and not yet stored, by its answer within ``timeout``: before a gap becomes a
        resend request. False when none answers in time."""
        ...

    async def answer_holders(self, holds: Callable[[str, int], bool]) -> Callable[[], None]:
        """Answer :meth:`ask_holders` with ``holds(hall, seq)`` until the returned function is called
        (on PostgreSQL, from when this process listens: at once unless the server is unreachable)."""
        ...

    async def events(self, *, hall: str | None = None, device: str | None = None, type: str | None = None,
                     time_from: int | None = None, time_to: int | None = None, after_seq: int | None = None,
                     limit: int = 100, halls: Sequence[str] | None = None,
                     after_hall: str | None = None) -> list[dict[str, Any]]:
        """Stored events in wire form (plus ``central_time``), ordered by (hall, seq).

        ``time_from``/``time_to`` bound ``agent_time`` as [from, to); ``after_seq`` pages within a hall;
        without ``hall``, ``after_hall`` + ``after_seq`` page across halls (rows after that (hall, seq)).
        """
        ...

    async def integration_log(self, *, hall: str | None = None, kind: str | None = None, limit: int = 100,
                              halls: Sequence[str] | None = None, device: str | None = None,
                              time_from: int | None = None, time_to: int | None = None) -> list[LogEntry]:
        """Newest first; ``time_from``/``time_to`` bound the row's time as [from, to) in µs."""
        ...
