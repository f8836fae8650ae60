"""``hall-agent diag modbus``: raw and decoded registers, --json, --watch, one-line errors."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.diag.errors import EXIT_NO_ANSWER, EXIT_PORT, EXIT_USAGE
from agent.modbus.diag import ModbusDiagOptions, run_modbus_diag

from .modbus_helpers import SilentServer, TestTerminal, free_port

AGENT = str(Path(sys.executable).parent / "hall-agent")


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr


def main(args: list[str]) -> Result:
    """The CLI as a technician runs it (a subprocess: its logging set-up stays out of this process)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return Result(subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=30, env=env))


@pytest.fixture
def threaded_terminal() -> Iterator[TestTerminal]:
    """A terminal served from its own event loop in a thread (the CLI runs asyncio.run itself)."""
    term = TestTerminal(bets=123_456, rounds=7)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(term.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(5)
    yield term
    asyncio.run_coroutine_threadsafe(term.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_cli_prints_raw_and_decoded_registers(threaded_terminal: TestTerminal) -> None:
    res = main(["diag", "modbus", "--host", "127.0.0.1", "--port", str(threaded_terminal.port), "--unit", "1"])
    out = res.out
    assert res.code == 0, res.err
    assert "bets" in out and "123456" in out and "0001 E240" in out   # 123456 = 0x0001E240, high word first
    assert "enabled=yes" in out


def test_cli_json(threaded_terminal: TestTerminal) -> None:
    res = main(["diag", "modbus", "--host", "127.0.0.1", "--port", str(threaded_terminal.port), "--json"])
    rep = json.loads(res.out)
    assert res.code == 0 and rep["values"]["bets"] == 123_456 and rep["values"]["rounds"] == 7
    assert rep["registers"]["4"] == 1 and rep["registers"]["5"] == 0xE240 and rep["flags"]["in_service"] is True


def test_cli_disable_writes_control(threaded_terminal: TestTerminal) -> None:
    res = main(["diag", "modbus", "--host", "127.0.0.1", "--port", str(threaded_terminal.port), "--disable",
                "--json"])
    rep = json.loads(res.out)
    assert res.code == 0 and threaded_terminal.writes == [(18, 1)] and rep["flags"]["enabled"] is False


def test_cli_errors_are_one_line_with_exit_codes() -> None:
    res = main(["diag", "modbus"])
    assert res.code == EXIT_USAGE and "--host" in res.err
    res = main(["diag", "modbus", "--host", "127.0.0.1", "--port", str(free_port()), "--timeout-ms", "300"])
    err = res.err.strip()
    assert res.code == EXIT_PORT and err.startswith("hall-agent: error: cannot connect") and "\n" not in err
    res = main(["diag", "modbus", "--serial", "/dev/does-not-exist", "--timeout-ms", "300"])
    assert res.code == EXIT_PORT and "serial port" in res.err and "Traceback" not in res.err
    res = main(["diag", "modbus", "--help"])
    assert res.code == 0 and "--watch" in res.out and "--serial" in res.out


async def test_timeout_and_wrong_map_are_no_answer() -> None:
    async with SilentServer() as silent:
        with pytest.raises(Exception) as info:
            await run_modbus_diag(ModbusDiagOptions(host="127.0.0.1", port=silent.port, timeout=0.2), io.StringIO())
        assert getattr(info.value, "code", None) == EXIT_NO_ANSWER
    async with TestTerminal(map_version=2) as term:
        with pytest.raises(Exception) as info:
            await run_modbus_diag(ModbusDiagOptions(host="127.0.0.1", port=term.port, timeout=0.5), io.StringIO())
        assert getattr(info.value, "code", None) == EXIT_NO_ANSWER and "map" in str(info.value)


async def test_watch_prints_counter_deltas() -> None:
    async with TestTerminal(bets=100) as term:
        out = io.StringIO()

        async def play() -> None:
            await asyncio.sleep(0.12)
            term.add(bets=50, cash_in=1000)

        player = asyncio.create_task(play())
        code = await run_modbus_diag(ModbusDiagOptions(host="127.0.0.1", port=term.port, watch=True, interval=0.05,
                                                       seconds=0.4), out)
        await player
        assert code == 0
        text = out.getvalue()
        assert "bets 100 → 150 (+50)" in text and "cash_in 0 → 1000 (+1000)" in text
