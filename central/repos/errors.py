"""The errors a repository raises for a request it refuses (not for bugs or I/O failures)."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the errors a store raises for a request it refuses (not for bugs or I/O failures)."""


class BackendUnavailable(StoreError):
    """The DB URL names a backend this build does not have (yet)."""
