"""Where a verified run of a hall's chain meets what is stored: the rule every backend's ingest applies
inside its transaction, once it holds the hall's chain end (locked against concurrent writers).

Backend-neutral and pure: the backend reads the hall's ``last_seq``/``last_hash`` (and, when
:func:`stored_hash_needed` names a seq, the stored hash there), and :func:`decide` says whether the run
is a gap, a duplicate, a conflict, or which of its events are new. So SQLite and PostgreSQL give the
same outcome for the same stored state.
"""

from __future__ import annotations

from central.repos.ingest import IngestResult
from central.staging import StagedEvents


def stored_hash_needed(staged: StagedEvents, last_seq: int) -> int | None:
    """The seq whose stored hash :func:`decide` needs (a run that ends inside the stored prefix), else None."""
    if staged.first_seq > last_seq + 1 or staged.last_seq >= last_seq:
        return None
    return staged.last_seq


def decide(staged: StagedEvents, last_seq: int, last_hash: str, stored_hash: str | None) -> IngestResult | StagedEvents:
    """A result that changes nothing (``gap``, ``duplicate``, ``conflict``), or the run's new events to store.

    ``stored_hash`` is the stored hash at :func:`stored_hash_needed`'s seq (None if that row is missing
    or no seq was needed)."""
    first, last = staged.first_seq, staged.last_seq
    if first > last_seq + 1:
        return IngestResult("gap", last_seq, last_hash)
    if last <= last_seq:
        held = last_hash if last == last_seq else stored_hash
        # The chain binds every earlier event to this hash, so one comparison covers the batch.
        if held == staged.hash_at(-1):
            return IngestResult("duplicate", last_seq, last_hash, skipped=staged.count)
        return IngestResult("conflict", last_seq, last_hash, conflict_seq=last)
    if first <= last_seq:
        index = last_seq - first
        if staged.hash_at(index) != last_hash:
            return IngestResult("conflict", last_seq, last_hash, conflict_seq=last_seq)
        return staged.tail(index + 1)
    if staged.first_prev_hash != last_hash:
        return IngestResult("conflict", last_seq, last_hash, conflict_seq=first)
    return staged
