"""What the outbox takes in: anything shaped like the normalizer's ``EventDraft``.

A structural Protocol rather than an import of ``agent.pipeline.drafts`` so the outbox does not
depend on the normalizer (and tests can hand it a tiny dataclass). The outbox adds what only it can
know: ``seq``, ``id``, ``hall`` and the chain link.
"""

from __future__ import annotations

from typing import Any, Protocol


class DraftLike(Protocol):
    """An event before the outbox numbers and seals it; times are integer microseconds UTC."""

    @property
    def device(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def device_time(self) -> int | None: ...

    @property
    def agent_time(self) -> int: ...

    @property
    def data(self) -> dict[str, Any]: ...
