"""Named leases: the one process of several that may run a job alone (issue 14: the alert monitor
runs in exactly one ``hall-central serve`` process, whichever holds the ``monitor`` lease).

A lease is (name, owner, expires_at). The holder renews it well before it expires; a process that dies
stops renewing, so another takes it over once it has expired. Times are central's clock in µs."""

from __future__ import annotations

from typing import Protocol


class LeaseRepository(Protocol):
    async def acquire(self, name: str, owner: str, *, now: int, ttl_us: int) -> bool:
        """Take ``name`` for ``owner`` until ``now + ttl_us`` if it is free, expired or already
        ``owner``'s (then it is renewed); False while another owner holds it. One transaction."""
        ...

    async def release(self, name: str, owner: str) -> None:
        """Give ``name`` up if ``owner`` holds it (a clean stop hands the job over at once)."""
        ...

    async def holder(self, name: str, *, now: int) -> str | None:
        """Who holds ``name`` now (None: nobody, or an expired lease)."""
        ...
