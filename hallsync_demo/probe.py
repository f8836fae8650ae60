"""What "everything answers" means before the demo prints its URL, asked the way a user would.

Central's ``/api/v1/health`` answers; with the admin key ``/api/v1/halls`` shows the demo hall online
(the agent's retained presence crossed the broker); ``/api/v1/reports/ggr`` has a row with bets (games
were played, polled by the agent, signed, replicated, verified and stored). Each check is one short
request; the caller polls them with a deadline and watches the children meanwhile.
"""

from __future__ import annotations

from typing import Any

import aiohttp

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=3)


class Central:
    """A tiny read-only client of central's API, for the demo's readiness checks."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: str) -> None:
        self.session = session
        self.base = base.rstrip("/") + "/api/v1"
        self.headers = {"Authorization": f"Bearer {key}"}

    async def _get(self, path: str, *, auth: bool = True) -> Any:
        """The JSON body of a 200, else None (not up yet, or an error that a later try may not have)."""
        try:
            async with self.session.get(self.base + path, headers=self.headers if auth else None,
                                        timeout=REQUEST_TIMEOUT) as resp:
                if resp.status != 200:
                    return None
                return await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def put(self, path: str, body: dict[str, Any]) -> str | None:
        """PUT a JSON body; None when central took it (200/201), else what it said."""
        try:
            async with self.session.put(self.base + path, json=body, headers=self.headers,
                                        timeout=REQUEST_TIMEOUT) as resp:
                return None if resp.status in (200, 201) else f"{resp.status} {await resp.text()}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return repr(exc)

    async def healthy(self) -> bool:
        body = await self._get("/health", auth=False)
        return isinstance(body, dict) and body.get("status") == "ok"

    async def hall_online(self, hall: str, since_us: int) -> bool:
        """Online by a presence message the agent sent at ``since_us`` or later: in a reused data
        directory central may still hold "online" from a run that was killed."""
        body = await self._get("/halls")
        rows = body.get("rows", []) if isinstance(body, dict) else []
        return any(r.get("id") == hall and r.get("online") is True and isinstance(r.get("status_at_us"), int)
                   and r["status_at_us"] >= since_us for r in rows)

    async def hall_bets(self, hall: str) -> int | None:
        """The hall's total bets in the GGR report (minor units; 0 before its first game), None if no answer."""
        body = await self._get(f"/reports/ggr?group_by=hall&hall={hall}")
        if not isinstance(body, dict):
            return None
        return sum(r["bets"] for r in body.get("rows", []) if r.get("key") == hall and isinstance(r.get("bets"), int))
