"""Named leases and the one alert monitor among several processes (issue 14): whichever holds the
``monitor`` lease evaluates; a clean stop hands it over at once, a dead holder's lease lapses."""

from __future__ import annotations

from central.monitor import LEASE, Monitor
from central.repos import Repositories

from .builders import T0

S = 1_000_000


async def test_a_lease_has_one_holder_renews_lapses_and_is_released(store: Repositories) -> None:
    leases = store.leases
    assert await leases.acquire("job", "a", now=T0, ttl_us=10 * S)
    assert not await leases.acquire("job", "b", now=T0 + 1, ttl_us=10 * S)
    assert await leases.holder("job", now=T0 + 2) == "a"
    assert await leases.acquire("job", "a", now=T0 + 9 * S, ttl_us=10 * S)       # renewed to T0 + 19 s
    assert not await leases.acquire("job", "b", now=T0 + 12 * S, ttl_us=10 * S)  # a's renewal still holds
    assert await leases.acquire("job", "b", now=T0 + 19 * S, ttl_us=10 * S)      # a stopped renewing: lapsed
    assert await leases.holder("job", now=T0 + 20 * S) == "b"
    await leases.release("job", "a")                                              # not a's: nothing changes
    assert await leases.holder("job", now=T0 + 20 * S) == "b"
    await leases.release("job", "b")
    assert await leases.holder("job", now=T0 + 20 * S) is None
    assert await leases.acquire("other", "b", now=T0, ttl_us=S)                   # leases are independent


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


async def test_of_two_monitors_only_the_lease_holder_evaluates_and_the_other_takes_over(store: Repositories) -> None:
    await store.halls.add_hall("h1", "pem", now=T0)
    await store.halls.set_presence("h1", online=False, session=1, at=T0)
    clock = Clock()
    first, second = (Monitor(store, clock=clock, interval=1.0, lease_owner=o) for o in ("proc-a", "proc-b"))
    assert await first.lead() and not await second.lead()
    assert first.leading and not second.leading
    assert await store.leases.holder(LEASE, now=clock()) == "proc-a"
    clock.now += 30 * S
    assert await first.lead() and not await second.lead()   # renewed within its ttl: still a's
    await first.stop()                                       # a clean stop releases the lease at once
    assert await store.leases.holder(LEASE, now=clock()) is None
    assert await second.lead()
    clock.now += second.lease_ttl_us - 1
    assert not await first.lead()                            # b holds it until its ttl passes
    clock.now += 1                                           # b died: it stopped renewing, the lease lapsed
    assert await first.lead() and not await second.lead()


async def test_running_monitors_raise_the_alert_once_from_the_leader_only(store: Repositories) -> None:
    from tests import waits

    await store.halls.add_hall("h1", "pem", now=T0)
    await store.halls.set_presence("h1", online=False, session=1, at=T0)
    monitors = [Monitor(store, interval=0.05, lease_owner=o) for o in ("proc-a", "proc-b")]
    for m in monitors:
        m.start()
    try:
        await waits.until(lambda: any(m.last.raised for m in monitors), "the hall_offline alert")
        (leader,) = [m for m in monitors if m.leading]
        (follower,) = [m for m in monitors if not m.leading]
        assert follower.last.raised == 0 and follower.last.active == 0   # it never evaluated
        alerts = await store.monitor.alerts(state="open")
        assert [(a.hall, a.kind) for a in alerts] == [("h1", "hall_offline")]
        await leader.stop()
        await waits.until(lambda: follower.leading and follower.last.active == 1, "the other monitor to take over")
        assert [(a.hall, a.kind) for a in await store.monitor.alerts(state="open")] == [("h1", "hall_offline")]
    finally:
        for m in monitors:
            await m.stop()
