"""A simulated hall floor: N EGMs on N ptys in one process, the agent's device list, and the truth.

``devices.toml`` is written as soon as the ptys exist (the agent's input). ``truth.json`` — what the
players really did, plus each machine's meters — is written once every machine has finished its
rounds, and written again on stop, so a host that keeps reading final meters after the rounds
still sees the same figures. Both files are replaced atomically (write, then rename), so a reader
that waits for them never sees half a file.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path

import structlog

from .egm import Egm
from .games import GameConfig
from .pty_egm import Framing, PtyEgmServer
from .responder import LinkConfig

log = structlog.get_logger("firmware_sim.floor")


def device_id(address: int) -> str:
    return f"egm-{address:03d}"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def devices_toml(servers: Sequence[PtyEgmServer]) -> str:
    """The agent's device list (design.md): one ``[[devices]]`` table per EGM."""
    out = []
    for server in servers:
        out.append("[[devices]]\n"
                   f"id = {json.dumps(device_id(server.egm.address))}\n"
                   'protocol = "sas"\n'
                   f"port = {json.dumps(server.path)}\n"
                   f"address = {server.egm.address}\n"
                   f"framing = {json.dumps(server.framing)}\n")
    return "\n".join(out)


def truth_document(egms: Sequence[Egm]) -> dict[str, object]:
    return {"devices": {device_id(egm.address): egm.snapshot() for egm in egms}}


class Floor:
    """EGMs at SAS addresses 1..N, each on its own pty, with their players."""

    def __init__(self, out: Path, egms: int, *, seed: int = 0, pace: float = 3.0, rounds: int | None = None,
                 framing: Framing = "marks", games: list[GameConfig] | None = None,
                 link: LinkConfig | None = None) -> None:
        if not 1 <= egms <= 127:
            raise ValueError("a SAS loop holds 1..127 EGMs")
        self.out = out
        self.servers = [PtyEgmServer(Egm(address, games, seed=seed, pace=pace, rounds=rounds), framing,
                                     link=link) for address in range(1, egms + 1)]

    @property
    def egms(self) -> list[Egm]:
        return [server.egm for server in self.servers]

    async def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for server in self.servers:
            await server.start()
        _atomic_write(self.out / "devices.toml", devices_toml(self.servers))
        log.info("floor.ready", egms=len(self.servers), devices=str(self.out / "devices.toml"))

    def write_truth(self) -> Path:
        path = self.out / "truth.json"
        _atomic_write(path, json.dumps(truth_document(self.egms), indent=2, sort_keys=True) + "\n")
        return path

    async def all_finished(self) -> None:
        await asyncio.gather(*(server.finished.wait() for server in self.servers))

    async def run(self, stop: asyncio.Event, exit_when_done: bool = False) -> None:
        """Serve until ``stop`` is set; write truth when the rounds are done and again at the end."""
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        stop_wait = asyncio.ensure_future(stop.wait())
        done_wait = asyncio.ensure_future(self.all_finished())
        try:
            await asyncio.wait({stop_wait, done_wait}, return_when=asyncio.FIRST_COMPLETED)
            if done_wait.done() and not stop_wait.done():
                log.info("floor.rounds_done", truth=str(self.write_truth()))
                if not exit_when_done:
                    await stop_wait
        finally:
            for fut in (stop_wait, done_wait):
                fut.cancel()
            await asyncio.wait({stop_wait, done_wait}, timeout=1.0)
            await self.stop()
            log.info("floor.stopped", truth=str(self.write_truth()))

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self.servers))
