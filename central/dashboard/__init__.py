"""The operator's dashboard: static files (``index.html``, ``app.js``, ``style.css``) served by
central's own HTTP app at ``/`` and ``/dashboard/...``.

No build step and no external URL (halls and HQ may be offline from the internet): plain JavaScript,
charts drawn as inline SVG by our own code. The files hold no data — every number comes from
``/api/v1`` with the user's API key — so these routes are public. They are sent with a strict
Content-Security-Policy (only our own origin, no inline script or style), so that even an injected
string in the data could not run code.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

FILES: Final[dict[str, str]] = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}
CSP: Final = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, bytes]:
    root = resources.files(__name__)
    return {name: root.joinpath(name).read_bytes() for name in FILES}


def add_routes(app: web.Application) -> None:
    """Mount ``GET /`` (the page) and ``GET /dashboard/{name}`` (its files) on ``app``.

    The files are read once here, so a missing file fails at start-up, not at a user's first visit."""
    content = _load()

    def respond(name: str) -> web.Response:
        return web.Response(body=content[name], content_type=FILES[name], charset="utf-8", headers=HEADERS)

    async def index(request: web.Request) -> web.Response:
        return respond("index.html")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in content:
            raise web.HTTPNotFound(reason=f"no dashboard file {name[:64]!r}")
        return respond(name)

    app.router.add_get("/", index)
    app.router.add_get("/dashboard/", index)
    app.router.add_get("/dashboard/{name}", asset)
