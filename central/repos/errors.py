"""The errors a repository raises for a request it refuses (not for bugs or I/O failures)."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the errors a store raises for a request it refuses (not for bugs or I/O failures)."""


class BackendUnavailable(StoreError):
    """The DB URL names a backend this build does not have (yet)."""


class DuplicateKey(StoreError):
    """A write would store a second row with a key that must be unique (a command or rule id given
    twice, a hall registered by two processes at once). Both backends raise this, never their driver's
    error, so the CLI and the API answer it alike."""

    def __init__(self, table: str) -> None:
        super().__init__(f"{table}: a row with the same key is already stored")
        self.table = table
