"""Property: whatever the batching, order, replays and losses, totals end exact once the agent resends."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.ingest import Ingestor
from central.repos import Repositories
from central.store import open_sqlite, open_store
from protocols.sync import generate_private_key

from .builders import FakeHall
from .checks import hall_totals
from .conftest import BACKENDS, StepClock, empty_pg, register

CENTRAL_KEY = generate_private_key()
HALL = FakeHall("hall-prop", seed=42)
HALL.play(120)
N = len(HALL.events)


@st.composite
def deliveries(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Arbitrary (possibly overlapping) seq ranges in arbitrary order, with repeats and omissions."""
    cuts = sorted(draw(st.sets(st.integers(1, N - 1), max_size=12)))
    bounds = [0, *cuts, N]
    ranges = [(bounds[i] + 1, bounds[i + 1]) for i in range(len(bounds) - 1)]
    extra = draw(st.lists(st.tuples(st.integers(1, N), st.integers(0, 30)), max_size=5))
    ranges += [(first, min(N, first + length)) for first, length in extra]
    order = draw(st.permutations(ranges))
    dropped = draw(st.sets(st.integers(0, len(order) - 1), max_size=3))
    return [r for i, r in enumerate(order) if i not in dropped]


@pytest.fixture(params=BACKENDS)
def open_db(request: pytest.FixtureRequest) -> Callable[[str], Awaitable[Repositories]]:
    """Opens an empty store of the backend for each example (a SQLite file in ``tmp``, or the shared
    PostgreSQL test database emptied)."""
    if request.param == "sqlite":
        return lambda tmp: open_sqlite(Path(tmp) / "c.db")
    url = request.getfixturevalue("pg_shared")

    async def fresh(tmp: str) -> Repositories:
        await empty_pg(url)
        return await open_store(url)

    return fresh


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(plan=deliveries(), buffer=st.booleans())
def test_any_delivery_order_ends_exact(plan: list[tuple[int, int]], buffer: bool,
                                       open_db: Callable[[str], Awaitable[Repositories]]) -> None:
    asyncio.run(_run(plan, buffer, open_db))


async def _run(plan: list[tuple[int, int]], buffer: bool, open_db: Callable[[str], Awaitable[Repositories]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_db(tmp)
        try:
            await register(store, HALL)
            ingestor = Ingestor(store, CENTRAL_KEY, StepClock(), max_buffered_batches=4 if buffer else 0)
            for first, last in plan:
                await ingestor.handle(HALL.topic, HALL.batch(first, last))
                record = await store.halls.get_hall(HALL.hall)
                assert record is not None
                # Never more than the contiguous prefix, and exactly its money.
                assert await hall_totals(store, HALL.hall) == HALL.sum_range(1, record.last_seq)
            # The agent resends everything unacked until central has it all.
            record = await store.halls.get_hall(HALL.hall)
            assert record is not None
            if record.last_seq < N:
                outcome = await ingestor.handle(HALL.topic, HALL.batch(record.last_seq + 1, N))
                assert outcome.acked_through_seq == N
            assert await hall_totals(store, HALL.hall) == HALL.total
            assert len(await store.ingest.events(hall=HALL.hall, limit=10_000)) == N
        finally:
            await store.close()
