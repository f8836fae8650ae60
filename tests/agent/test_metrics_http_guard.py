"""The agent's ``/metrics`` listener cuts off a client that stalls in its headers (issue 16), over a
real socket, while a normal scrape keeps working."""

from __future__ import annotations

import asyncio

import aiohttp

from agent.metrics_http import MetricsServer
from protocols.httpguard import Limits


async def test_a_stalled_scrape_is_closed_and_a_normal_one_answered() -> None:
    server = MetricsServer("127.0.0.1", 0, lambda: "# nothing yet\n", Limits(header_timeout=0.5))
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n")  # no blank line: the request never ends
        await writer.drain()
        async with asyncio.timeout(5):
            answer = await reader.read()  # until the agent closes the connection
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert server.guard.stats["closed_slow_headers"] == 1
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{server.port}/metrics") as resp:
            assert resp.status == 200 and await resp.text() == "# nothing yet\n"
    finally:
        await server.stop()
