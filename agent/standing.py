"""The agent's side of standing data: verify HQ's signed document, keep the newest, apply it.

The document is kept as received (the signed bytes) in ``DATA_DIR/standing.json`` (0600, replaced
atomically), and verified again when the agent starts, so a hall that restarts while HQ is offline
still runs on HQ's last word (design.md, "Standing data"). A version older than the one held is
refused and logged: a stale retained message or a replay must not turn a hall's gaming day back.
The same version again is not news. Applying it sets the normalizer's gaming day, so the day-close
snapshot falls where central's reports put the day's end.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocols.sync import SyncError
from protocols.sync.standing import StandingData, decode_standing

from .keys import write_atomically

log = structlog.get_logger("agent.standing")

STANDING_FILE: Final = "standing.json"


class StandingStore:
    """Owned by the runtime; :meth:`on_message` is the replicator's handler for the standing topic."""

    def __init__(self, hall: str, central_key: Ed25519PublicKey, path: Path,
                 apply: Callable[[StandingData], None]) -> None:
        self.hall = hall
        self.central_key = central_key
        self.path = path
        self._apply = apply
        self.current: StandingData | None = None
        self.refused = 0

    def load(self) -> StandingData | None:
        """The last verified document from disk (applied), or None if there is none or it fails to verify."""
        try:
            payload = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("standing_unreadable", path=str(self.path), error=str(exc))
            return None
        try:
            doc = decode_standing(payload, self.central_key, expect_hall=self.hall)
        except SyncError as exc:
            log.error("standing_file_refused", path=str(self.path), error=f"{type(exc).__name__}: {exc}")
            return None
        self.current = doc
        self._apply(doc)
        log.info("standing_loaded", version=doc.version, timezone=doc.timezone, gaming_day_start=doc.gaming_day_start)
        return doc

    def on_message(self, payload: bytes) -> bool:
        """Verify and keep a document from HQ; True when it was newer and is now applied."""
        if not payload:
            return False   # a cleared retained message
        try:
            doc = decode_standing(payload, self.central_key, expect_hall=self.hall)
        except SyncError as exc:
            self.refused += 1
            log.error("standing_refused", error=f"{type(exc).__name__}: {exc}")
            return False
        held = self.current
        if held is not None and doc.version < held.version:
            self.refused += 1
            log.error("standing_refused", error=f"version {doc.version} is older than the held {held.version}")
            return False
        if held is not None and doc.version == held.version:
            return False
        try:
            write_atomically(self.path, payload, 0o600)
        except OSError as exc:   # applied anyway: HQ sends it again on the next connect
            log.error("standing_not_saved", path=str(self.path), error=str(exc))
        self.current = doc
        self._apply(doc)
        log.info("standing_applied", version=doc.version, timezone=doc.timezone,
                 gaming_day_start=doc.gaming_day_start)
        return True
