"""A simulated hall floor: N EGMs on N ptys and M Modbus TCP terminals on loopback in one process, the
agent's device list, and the truth.

``devices.toml`` is written as soon as the ptys exist (the agent's input). ``truth.json`` — what the
players really did, plus each machine's meters or terminal's counters — is written once every device
has finished its rounds, and written again on stop, so a host that keeps reading final meters after the rounds
still sees the same figures. Both files are replaced atomically (write, then rename), so a reader
that waits for them never sees half a file.

With wire noise (``--wire-faults``) each EGM's line gets its own seeded stream of corrupted, truncated
and dropped replies, and ``wire-faults.json`` (written beside truth.json, at the same moments) counts
what each line suffered. truth.json is unaffected: the noise is on the wire, not in the machines.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path

import structlog

from protocols.devices import DeviceSpec, ModbusDeviceSpec, SasDeviceSpec, render_devices

from .egm import Egm
from .faults import Faults, WireNoise
from .games import GameConfig
from .modbus_server import ModbusTerminalServer
from .pty_egm import Framing, PtyEgmServer
from .responder import LinkConfig
from .terminal import Terminal

log = structlog.get_logger("firmware_sim.floor")


MAX_TERMINALS = 99
TERMINAL_MAP = "hallsync-terminal-v1"


def device_id(address: int) -> str:
    return f"egm-{address:03d}"


def terminal_id(number: int) -> str:
    return f"term-{number:02d}"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def devices_toml(servers: Sequence[PtyEgmServer], terminals: Sequence[ModbusTerminalServer] = ()) -> str:
    """The agent's device list (design.md, protocols.devices): one ``[[devices]]`` table per EGM, then per terminal."""
    specs: list[DeviceSpec] = [SasDeviceSpec(id=device_id(server.egm.address), port=server.path or "",
                                             address=server.egm.address, framing=server.framing)
                               for server in servers]
    specs += [ModbusDeviceSpec(id=terminal_id(term.terminal.number), host=term.host, port=term.port, unit=term.unit,
                               map=TERMINAL_MAP) for term in terminals]
    return render_devices(specs)


def truth_document(egms: Sequence[Egm], terminals: Sequence[Terminal] = ()) -> dict[str, object]:
    devices = {device_id(egm.address): egm.snapshot() for egm in egms}
    devices.update({terminal_id(term.number): term.snapshot() for term in terminals})
    return {"devices": devices}


class Floor:
    """EGMs at SAS addresses 1..N, each on its own pty, with their players; terminals ``term-01``…
    each a Modbus TCP server (unit 1) on its own loopback port, with their customers."""

    def __init__(self, out: Path, egms: int, *, terminals: int = 0, seed: int = 0, pace: float = 3.0,
                 rounds: int | None = None, framing: Framing = "marks", games: list[GameConfig] | None = None,
                 link: LinkConfig | None = None, counter_start: int = 0, wait_for_host: bool = False,
                 wire: WireNoise | None = None) -> None:
        if not 0 <= egms <= 127:
            raise ValueError("a SAS loop holds 1..127 EGMs")
        if not 0 <= terminals <= MAX_TERMINALS:
            raise ValueError(f"a floor holds 0..{MAX_TERMINALS} terminals")
        if egms + terminals == 0:
            raise ValueError("a floor needs at least one EGM or terminal")
        self.out = out
        self.wire = wire if wire is not None and wire.active else None
        self.servers = [PtyEgmServer(Egm(address, games, seed=seed, pace=pace, rounds=rounds), framing,
                                     faults=Faults(noise=self.wire.for_device(address)) if self.wire else None,
                                     link=link, wait_for_host=wait_for_host) for address in range(1, egms + 1)]
        self.terminal_servers = [
            ModbusTerminalServer(Terminal(number, seed=seed, pace=pace, rounds=rounds, preset=counter_start or None))
            for number in range(1, terminals + 1)]

    @property
    def egms(self) -> list[Egm]:
        return [server.egm for server in self.servers]

    @property
    def terminals(self) -> list[Terminal]:
        return [server.terminal for server in self.terminal_servers]

    async def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for server in self.servers:
            await server.start()
        for term in self.terminal_servers:
            await term.start()
        _atomic_write(self.out / "devices.toml", devices_toml(self.servers, self.terminal_servers))
        log.info("floor.ready", egms=len(self.servers), terminals=len(self.terminal_servers),
                 devices=str(self.out / "devices.toml"))

    def write_truth(self) -> Path:
        path = self.out / "truth.json"
        document = truth_document(self.egms, self.terminals)
        _atomic_write(path, json.dumps(document, indent=2, sort_keys=True) + "\n")
        if self.wire is not None:
            _atomic_write(self.out / "wire-faults.json", json.dumps(self.wire_report(), indent=2) + "\n")
        return path

    def wire_report(self) -> dict[str, object]:
        """What the noise did to each line so far: replies sent, and how many were corrupted,
        truncated or dropped (a campaign prints these beside its process faults)."""
        assert self.wire is not None
        rates = {"corrupt": self.wire.corrupt, "drop": self.wire.drop, "truncate": self.wire.truncate}
        devices = {device_id(server.egm.address): server.faults.noise.report()
                   for server in self.servers if server.faults.noise is not None}
        return {"seed": self.wire.seed, "rates": rates, "devices": devices}

    async def all_finished(self) -> None:
        await asyncio.gather(*(server.finished.wait() for server in self.servers),
                             *(term.finished.wait() for term in self.terminal_servers))

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
        await asyncio.gather(*(server.stop() for server in self.servers),
                             *(term.stop() for term in self.terminal_servers))
