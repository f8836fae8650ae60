"""Shared test set-up: the repo's vectors live in ../shared beside the checkout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def sas_vectors() -> dict:
    path = SHARED / "vectors" / "sas.json"
    if not path.exists():
        pytest.fail(f"SAS vectors not found at {path}: ../shared must sit beside the checkout")
    return json.loads(path.read_text())
