"""Helpers shared by the whole-system benchmarks: child processes, /proc figures, the HQ setup.

Every figure read from ``/proc`` is Linux-only (the benchmarks' target). CPU times are user + system
seconds of every thread of the process; RSS figures are MiB (``VmRSS`` now, ``VmHWM`` peak).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.procs import Proc  # noqa: E402  (the repo root must be on sys.path first)

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- /proc ------------------------------------------------------------------------------------------

def proc_status(pid: int | str = "self") -> dict[str, int]:
    """The kB fields of /proc/PID/status (VmRSS, VmHWM, …); empty if the process is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[name] = int(parts[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def rss_mb(pid: int | str = "self") -> float:
    return proc_status(pid).get("VmRSS", 0) / 1024


def peak_rss_mb(pid: int | str = "self") -> float:
    return proc_status(pid).get("VmHWM", 0) / 1024


def reset_peak_rss(pid: int | str = "self") -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int | str = "self", *, children: bool = True) -> float:
    """user + system CPU seconds of a process (all its threads) and, with ``children``, of its live child
    processes (hall-central's verify pool); NaN if it is gone."""
    total = _own_cpu(str(pid))
    if children and total == total:
        root = str(os.getpid()) if pid == "self" else str(pid)
        for child in _children(root):
            own = _own_cpu(child)
            if own == own:
                total += own
    return total


def tree_cpu_seconds(pid: int | str) -> float:
    """user + system CPU seconds of a server and every process it ever forked: its own, its live
    descendants' and what its reaped children used (``cutime``/``cstime``). For PostgreSQL's postmaster,
    whose backends come and go with connections; NaN if it is gone."""
    total = _own_cpu(str(pid), reaped=True)
    if total == total:
        for child in _children(str(pid)):
            own = _own_cpu(child, reaped=True)
            if own == own:
                total += own
    return total


def _own_cpu(pid: str, *, reaped: bool = False) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return float("nan")
    fields = text[text.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat(5))
    if reaped:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: children it has waited for
    return ticks / CLK_TCK


def _children(pid: str) -> list[str]:
    """Every live descendant of ``pid`` (from the kernel's per-thread child lists)."""
    out: list[str] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except (FileNotFoundError, ProcessLookupError):
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as fh:
                    found = fh.read().split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            out.extend(found)
            todo.extend(found)
    return out


# -- child processes --------------------------------------------------------------------------------

def cli(*args: str) -> str:
    """Run one of the project's console scripts; its stdout, or SystemExit with its stderr."""
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    return done.stdout


def http_json(url: str, timeout: float = 2.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_until(check, timeout: float, what: str, *procs: Proc, interval: float = 0.1):
    """Poll ``check()`` until it returns something truthy; SystemExit with the children's logs if not."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc is not None and p.proc.poll() is not None:
                raise SystemExit(f"{p.name} exited with {p.proc.returncode} while waiting for {what}:\n{p.tail()}")
        try:
            last = check()
            if last:
                return last
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            pass
        time.sleep(interval)
    logs = "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in procs)
    raise SystemExit(f"timed out after {timeout} s waiting for {what} (last: {last!r})\n{logs}")


# -- HQ set-up ---------------------------------------------------------------------------------------

def setup_hq(work: Path, hall: str, db: str | Path | None = None) -> tuple[Path, Path, Path | str]:
    """Central's key pair, the hall's key pair, the hall registered: (central_dir, agent_dir, db).
    ``db``: central's database (a SQLite path or a ``postgresql://`` URL); default ``work/central.db``."""
    from agent.keys import init_keys

    central_dir, agent_dir = work / "central", work / "agent"
    db = work / "central.db" if db is None else db
    cli("hall-central", "keys", "init", "--data-dir", str(central_dir))
    init_keys(agent_dir)
    cli("hall-central", "halls", "add", hall, "--public-key", str(agent_dir / "hall.pub"), "--db", str(db))
    return central_dir, agent_dir, db


PROFILE_ENV = "HALLSYNC_BENCH_PROFILE"
"""A directory: every ``hall-central serve`` the benchmarks start runs under cProfile and writes
``NAME-PID.prof`` there when it stops (``python -m pstats FILE``; SIGTERM ends it cleanly)."""


def start_central(work: Path, central_dir: Path, db: Path | str, mqtt: str, http_port: int,
                  log_level: str = "warning", *, role: str = "all", name: str = "central",
                  client_id: str = "bench-central", share_group: str = "bench") -> Proc:
    """``hall-central serve`` as its own process; returns once health answers and ingest is connected.
    ``role``/``name``/``client_id``: one of several processes on one database (``serve --role ingest``)."""
    profile = os.environ.get(PROFILE_ENV)
    runner = [sys.executable, "-m", "cProfile", "-o", str(Path(profile) / f"{name}-{os.getpid()}.prof"),
              str(BIN / "hall-central")] if profile else [str(BIN / "hall-central")]
    central = Proc(name, [*runner, "serve", "--data-dir", str(central_dir), "--db", str(db),
                          "--mqtt", mqtt, "--http", f"127.0.0.1:{http_port}", "--log-level", log_level,
                          "--client-id", client_id, "--share-group", share_group, "--role", role], work).start()
    health = f"http://127.0.0.1:{http_port}/api/v1/health"

    def ready() -> bool:
        body = http_json(health)
        ingest = body.get("presence", {}).get("ingest")
        return body.get("status") == "ok" and (ingest is None or bool(ingest.get("connected")))

    wait_until(ready, 30, "central health + MQTT connection", central)
    return central


def start_broker(work: Path, mqtt: str | None):
    """(broker or None, URL text): our own Mosquitto unless ``mqtt`` names one."""
    if mqtt:
        return None, mqtt
    from mqttlink.broker import Mosquitto

    broker = Mosquitto(work / "mosquitto")
    broker.start()
    return broker, broker.url_text


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def work_dir(keep: str | None, prefix: str) -> Path:
    """``--keep DIR`` (created, must be empty) or a fresh temporary directory."""
    if keep:
        work = Path(keep).resolve()
        work.mkdir(parents=True, exist_ok=True)
        if any(work.iterdir()):
            raise SystemExit(f"--keep {work}: directory is not empty")
        return work
    return Path(tempfile.mkdtemp(prefix=prefix))
