"""The demo's run: set up, start broker → central → floor → agent, wait until all answer, print the URL
last, then wait for Ctrl-C (or a child dying) and stop the children in reverse order.

stdout carries only the start-up story and ends with the dashboard URL, so a script can take the last
line; the stop messages go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from protocols.devices import DevicesError, load_devices

from .brokers import BrokerChoice, plan_broker
from .catalog import catalog_entries
from .children import Child, ChildFailed
from .probe import Central
from .provision import HALL, Layout, provision

POLL = 0.25


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path
    http_host: str
    http_port: int
    broker: BrokerChoice = "auto"
    egms: int = 12
    terminals: int = 2
    pace: float = 2.0
    seed: int = 1
    startup_timeout: float = 90.0


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while starting up."""


class DemoFailed(RuntimeError):
    """Something did not come up; the message says what and shows the relevant log."""


def say(text: str) -> None:
    print(text, flush=True)


def tell(text: str) -> None:
    print(f"hall demo: {text}", file=sys.stderr, flush=True)


def dashboard_url(host: str, port: int) -> str:
    """What a browser on this machine opens: a wildcard listen address is reached via loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def check_port_free(host: str, port: int) -> None:
    """Fail before starting anything if another program listens on the dashboard's address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DemoFailed(f"cannot listen on {host}:{port} ({exc.strerror}): another program uses it? "
                             "choose another address with --http HOST:PORT") from None


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str, stop: asyncio.Event,
                 watched: list[Child], blame: Child) -> None:
    """Poll ``check`` until true; Interrupted on Ctrl-C, ChildFailed if a child exits, DemoFailed on time-out."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if stop.is_set():
            raise Interrupted
        for child in watched:
            child.check()
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise DemoFailed(f"{what} within {timeout:.0f} s; the end of {blame.log_path}:\n{blame.tail()}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL)


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _write_pids(layout: Layout, children: list[Child]) -> None:
    """``pids.json``: the demo's and each started child's pid, so a user (or a test) can check none is left."""
    pids = {"demo": os.getpid(), **{c.name: c.pid for c in children if c.pid is not None}}
    tmp = layout.pids.with_suffix(".tmp")
    tmp.write_text(json.dumps(pids, indent=2) + "\n")
    tmp.replace(layout.pids)


async def run_demo(opts: DemoOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    layout = Layout(opts.data_dir)
    check_port_free(opts.http_host, opts.http_port)
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    say(f"hall demo: files and logs in {layout.data_dir}")
    key = await provision(layout)
    broker = plan_broker(opts.broker, layout.data_dir, avoid=opts.http_port)
    py = sys.executable
    central_argv = [py, "-m", "central.cli", "serve", "--data-dir", str(layout.central_dir), "--db", str(layout.db),
                    "--mqtt", broker.url, "--http", f"{opts.http_host}:{opts.http_port}", "--log-level", "info"]
    if not broker.shared_subscriptions:
        central_argv.append("--no-shared-subscription")
    central = Child("central", central_argv, layout.data_dir / "central.log", stop_timeout=20)
    floor = Child("floor", [py, "-m", "firmware_sim.cli", "floor", "--egms", str(opts.egms), "--terminals",
                            str(opts.terminals), "--wait-for-host", "--pace", str(opts.pace), "--seed", str(opts.seed),
                            "--out", str(layout.floor_dir)], layout.data_dir / "floor.log")
    agent = Child("agent", [py, "-m", "agent.cli", "run", "--hall", HALL, "--data-dir", str(layout.agent_dir),
                            "--devices", str(layout.devices), "--mqtt", broker.url, "--central-key",
                            str(layout.central_dir / "central.pub"), "--log-level", "info"],
                  layout.data_dir / "agent.log")
    layout.devices.unlink(missing_ok=True)  # a reused data dir: wait for this run's device list, not the last
    started: list[Child] = []
    api = Central(aiohttp.ClientSession(), dashboard_url(opts.http_host, opts.http_port), key)
    failed = False
    try:
        t = opts.startup_timeout

        async def start(child: Child) -> None:
            await child.start()
            started.append(child)
            _write_pids(layout, started)

        await start(broker.child)
        await _until(lambda: _port_open(broker.port), 20, "the broker did not listen", stop, started, broker.child)
        say(f"broker: {broker.description} on 127.0.0.1:{broker.port}")
        await start(central)
        await _until(api.healthy, t, "central did not answer /api/v1/health", stop, started, central)
        say(f"central: API {api.base} (database {layout.db})")
        for path, body in catalog_entries():
            problem = await api.put(path, body)
            if problem is not None:
                raise DemoFailed(f"central refused the demo catalog ({path}): {problem}")

        async def devices_listed() -> bool:
            """The floor's device list is written (atomically) and names every machine, as the agent will read it."""
            if not layout.devices.exists():
                return False
            try:
                listed = load_devices(layout.devices)
            except DevicesError as exc:
                raise DemoFailed(f"the simulated floor wrote a device list the agent cannot use: {exc}") from None
            if (len(listed.sas), len(listed.modbus)) != (opts.egms, opts.terminals):
                raise DemoFailed(f"the simulated floor listed {len(listed.sas)} EGMs and {len(listed.modbus)} "
                                 f"terminals in {layout.devices}, not {opts.egms} and {opts.terminals}")
            return True

        await start(floor)
        await _until(devices_listed, t, "the simulated floor wrote no devices.toml", stop, started, floor)
        bets_before = await api.hall_bets(HALL) or 0  # a reused data dir has earlier games
        agent_started_us = time.time_ns() // 1000
        await start(agent)
        await _until(lambda: api.hall_online(HALL, agent_started_us), t, f"hall {HALL} did not come online at "
                     "central", stop, started, agent)

        async def first_bets() -> bool:
            return (await api.hall_bets(HALL) or 0) > bets_before

        await _until(first_bets, t, "no game reached central's GGR report", stop, started, agent)
        say(f"hall {HALL}: {opts.egms} simulated EGMs and {opts.terminals} terminals; its agent is online "
            "and their first games are at central")
        say(f"API key (admin): {key}")
        say("Ctrl-C stops everything.")
        say(dashboard_url(opts.http_host, opts.http_port))
        await _watch(stop, started)
    except Interrupted:
        pass
    except (ChildFailed, DemoFailed) as exc:
        tell(str(exc))
        failed = True
    finally:
        await api.session.close()
        if started:
            tell("stopping " + ", ".join(c.name for c in reversed(started)) + " ...")
        for child in reversed(started):
            code = await child.stop()
            if code not in (0, None, -signal.SIGTERM):
                tell(f"{child.name} exited with code {code} (log: {child.log_path})")
        tell(f"stopped; files and logs stay in {layout.data_dir}")
    return 1 if failed else 0


async def _watch(stop: asyncio.Event, children: list[Child]) -> None:
    """Until Ctrl-C or SIGTERM; ChildFailed as soon as a child exits on its own (the demo is then broken)."""
    waits: list[asyncio.Future[object]] = [asyncio.ensure_future(c.proc.wait()) for c in children
                                           if c.proc is not None]
    stopping: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
    try:
        done: set[asyncio.Future[object]] = set()
        while not done:  # no overall limit (the demo runs until Ctrl-C), but no unbounded single wait
            done, _ = await asyncio.wait([stopping, *waits], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopping, *waits):
            task.cancel()
    if not stop.is_set():
        for child in children:
            child.check()
