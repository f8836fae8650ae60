"""The demo's one-time set-up, done with the operators' own commands (as the README's manual steps).

Keys for central and the hall, the hall registered at central, and an admin API key for the dashboard.
Re-running on the same data directory keeps the keys and the registration (``halls add`` with the same
key is a no-op) and adds a fresh API key, so ``--data-dir`` can be reused across runs.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

HALL = "demo-hall"
STEP_TIMEOUT = 60.0


class ProvisionFailed(RuntimeError):
    """A set-up command failed; the message holds its output."""


@dataclass(frozen=True)
class Layout:
    """Where the demo keeps what; every path under the data directory."""

    data_dir: Path

    @property
    def central_dir(self) -> Path:
        return self.data_dir / "central"

    @property
    def db(self) -> Path:
        return self.central_dir / "central.db"

    @property
    def agent_dir(self) -> Path:
        return self.data_dir / "agent"

    @property
    def floor_dir(self) -> Path:
        return self.data_dir / "floor"

    @property
    def devices(self) -> Path:
        return self.floor_dir / "devices.toml"

    @property
    def pids(self) -> Path:
        return self.data_dir / "pids.json"


async def _run(module: str, *args: str) -> str:
    """Run ``python -m module args`` and return its stdout; ProvisionFailed on a non-zero exit."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, *args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ProvisionFailed(f"{module} {' '.join(args)} did not finish within {STEP_TIMEOUT:.0f} s") from None
    if proc.returncode != 0:
        raise ProvisionFailed(f"{module} {' '.join(args)} failed ({proc.returncode}): "
                              f"{err.decode(errors='replace').strip() or out.decode(errors='replace').strip()}")
    return out.decode()


async def provision(layout: Layout) -> str:
    """Set everything up; returns a new admin API key (its plain text is shown once, like the CLI's)."""
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    if not (layout.central_dir / "central.key").exists():
        await _run("central.cli", "keys", "init", "--data-dir", str(layout.central_dir))
    if not (layout.agent_dir / "hall.key").exists():
        await _run("agent.cli", "keys", "init", "--data-dir", str(layout.agent_dir))
    await _run("central.cli", "halls", "add", HALL, "--public-key", str(layout.agent_dir / "hall.pub"),
               "--db", str(layout.db))
    out = await _run("central.cli", "apikeys", "create", "--role", "admin", "--db", str(layout.db))
    lines = out.strip().splitlines()
    if not lines:
        raise ProvisionFailed("apikeys create printed no key")
    return lines[-1].strip()
