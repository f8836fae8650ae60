"""Fixtures for central: a real SQLite store in tmp_path, central's key, an ingestor with a test clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from central.ingest import Ingestor
from central.repos import Repositories
from central.store import open_sqlite
from protocols.sync import generate_private_key
from protocols.sync.keys import Ed25519PrivateKey

from .builders import T0, FakeHall


class StepClock:
    """Deterministic microsecond clock: each call is one millisecond later."""

    def __init__(self, start: int = T0 + 10**12) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1000
        return self.now


@pytest.fixture
def central_key() -> Ed25519PrivateKey:
    return generate_private_key()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Repositories]:
    s = await open_sqlite(tmp_path / "central.db")
    yield s
    await s.close()


@pytest.fixture
def ingestor(store: Repositories, central_key: Ed25519PrivateKey) -> Ingestor:
    return Ingestor(store, central_key, StepClock())


async def register(store: Repositories, *halls: FakeHall) -> None:
    for hall in halls:
        assert await store.halls.add_hall(hall.hall, hall.public_pem, now=T0) == "added"
