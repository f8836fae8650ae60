"""The project's own fault campaign: a whole hall under random faults, then every device against the truth.

Run: ``.venv/bin/python bench/chaos.py --seed 1 --egms 8 --terminals 2 --hogs 2 --minutes 5``
     ``.venv/bin/python bench/chaos.py --mode offline-hq --seed 1 --egms 8 --minutes 6 --central-outage 300``

Every part is its own process, as in the field, all on 127.0.0.1: ``hall-sim floor`` (N EGMs on ptys,
M Modbus terminals; ``--wire-faults`` puts seeded noise on every SAS line), ``hall-agent run``, a real
Mosquitto and ``hall-central serve``. While the floor plays its rounds, a seeded RNG injects faults,
one target at a time (the agent, central, the broker):

* ``agent_kill``: SIGKILL, restarted after a moment (facts in memory are gone; the meters know);
* ``agent_stop``: SIGSTOP for a few seconds, then SIGCONT (a frozen VM, a CPU-starved box);
* ``central_kill`` / ``broker_kill``: SIGKILL, restarted (the broker on the same port, its persistence kept);
* ``central_outage`` (``--central-outage SECONDS``): central stopped for that long while the hall plays;
* ``disk_full``: the agent's data directory is a small tmpfs (as root), filled with a file and freed
  again (the agent must fail closed, lock the machines, and lose nothing);
* CPU hogs (``--hogs N``): busy processes for the whole run.

Mode ``offline-hq`` is the long outage on its own: after central has seen the first bets it is stopped
for ``--central-outage`` seconds while the floor plays fast (default ``--pace 0.05``), then started again.

When the floor has played its rounds, every fault still running is undone and the hall drains: the
agent's outbox must be fully acknowledged, and the agent gets what its contract allows it to declare
its last losses (``--meter-settle`` plus two ``--meter-interval`` after the machines went idle) before
central's figures are read — waiting on those conditions, each with a timeout, never on a fixed sleep.
Then central's bets, wins, rounds, cash in and cash out per device (``GET /reports/ggr?group_by=device``)
are compared with ``truth.json``, exactly as tests/e2e/test_hall.py does (``tests/hallcheck.py``).

Printed: the faults injected by kind (and what the wire did), devices exact / total, every difference
with its direction (``egm-003 rounds -12 (central 688, truth 700)``), central's ``missed`` records per
device, and for a device that is not exact its reconciliation row and the agent's warnings about it.
Exit status 0 only if every device is exact. Everything started is stopped on exit, Ctrl-C included.
The work directory (logs, databases, floor files) is kept with ``--keep DIR`` or when a device is not exact.

``tests/e2e/test_chaos.py`` runs a short seeded campaign through :func:`run_campaign`.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BIN, Proc, setup_hq, start_broker, start_central, work_dir  # the repo root goes on sys.path

from mqttlink.broker import Mosquitto, free_port
from tests.hallcheck import (
    PAGE,
    Difference,
    api,
    central_by_device,
    cli,
    differences,
    expected,
    outbox,
    terminal_baselines,
)

HALL = "chaos"
FAULT_KINDS: tuple[str, ...] = ("agent_kill", "agent_stop", "central_kill", "broker_kill", "disk_full")
TARGET: dict[str, str] = {"agent_kill": "agent", "agent_stop": "agent", "disk_full": "agent",
                          "central_kill": "central", "central_outage": "central", "broker_kill": "broker"}
MODES: tuple[str, ...] = ("random", "offline-hq")
ROUND_FACTOR = 1.15          # a round takes about 1.15 x --pace (bills, cash-outs, handpays between games)
DEFAULT_WIRE = "corrupt=0.002,drop=0.001"
TICK = 0.1                   # the main loop's step: faults due, undo due, processes that died


@dataclass
class ChaosConfig:
    """One campaign. ``rounds`` and the fault count follow from ``minutes`` unless given."""

    seed: int = 1
    egms: int = 8
    terminals: int = 2
    pace: float | None = None            # default 3 (random) or 0.05 (offline-hq)
    rounds: int | None = None
    minutes: float | None = None         # the play window; default 5
    faults: int | None = None            # random faults; default one per 10 s of play (random), 0 (offline-hq)
    kinds: tuple[str, ...] = FAULT_KINDS
    hogs: int = 0
    mode: str = "random"
    central_outage: float | None = None  # seconds; default 0.8 x the play window in offline-hq
    wire: str | None = None              # --wire-faults spec; default DEFAULT_WIRE (random) or off (offline-hq)
    disk_mb: int = 512
    meter_interval: float = 5.0
    meter_settle: float = 3.0
    drain_timeout: float = 300.0
    work: Path | None = None             # a fresh temporary directory if None
    keep: bool = False
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))

    def resolved(self) -> ChaosConfig:
        """The defaults that depend on the mode and on each other, filled in."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        offline = self.mode == "offline-hq"
        pace = self.pace if self.pace is not None else (0.05 if offline else 3.0)
        if pace <= 0:
            raise ValueError("--pace must be > 0 (the floor must play)")
        if self.rounds is None:
            minutes = self.minutes if self.minutes is not None else 5.0
            rounds = max(1, math.ceil(minutes * 60 / (pace * ROUND_FACTOR)))
        else:
            rounds = self.rounds
            minutes = self.minutes if self.minutes is not None else rounds * pace * ROUND_FACTOR / 60
        window = minutes * 60
        faults = self.faults if self.faults is not None else (0 if offline else max(1, round(window / 10)))
        outage = self.central_outage
        if offline and outage is None:
            outage = round(0.8 * window)
        unknown = sorted(set(self.kinds) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kind(s) {', '.join(unknown)} (known: {', '.join(FAULT_KINDS)})")
        wire = self.wire if self.wire is not None else ("off" if offline else DEFAULT_WIRE)
        return ChaosConfig(**{**self.__dict__, "pace": pace, "rounds": rounds, "minutes": minutes, "faults": faults,
                              "central_outage": outage, "wire": wire})


@dataclass
class ChaosResult:
    """What a campaign found; :meth:`report` is what the command prints."""

    config: ChaosConfig
    work: Path
    faults: Counter[str]
    wire: dict[str, dict[str, int]]
    want: dict[str, dict[str, int]]
    got: dict[str, dict[str, int]]
    diffs: list[Difference]
    missed: dict[str, list[dict[str, int]]]
    notes: list[str]
    diagnosis: list[str]
    play_seconds: float
    drain_seconds: float
    total_seconds: float
    removed: bool = False     # the work directory was a temporary one and is gone (nothing to look at)

    @property
    def exact(self) -> list[str]:
        wrong = {d.device for d in self.diffs}
        return sorted(d for d in self.want if d not in wrong)

    @property
    def ok(self) -> bool:
        return not self.diffs and bool(self.want)

    def report(self) -> str:
        cfg = self.config
        lines = [f"chaos: seed {cfg.seed}, mode {cfg.mode}, {cfg.egms} EGM(s) + {cfg.terminals} terminal(s), "
                 f"pace {cfg.pace:g} s, {cfg.rounds} rounds, {cfg.hogs} hogs; play {self.play_seconds:.0f} s, "
                 f"drain {self.drain_seconds:.0f} s, total {self.total_seconds:.0f} s"]
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items())) or "none"
        lines.append(f"faults injected: {sum(self.faults.values())} ({kinds})")
        if self.wire:
            total = Counter[str]()
            for counts in self.wire.values():
                total.update(counts)
            lines.append(f"wire ({cfg.wire}): {total['corrupt']} corrupted, {total['truncate']} truncated, "
                         f"{total['drop']} dropped of {total['replies']} replies")
        lines.append(f"devices exact: {len(self.exact)} / {len(self.want)}")
        lines += [f"  {d}" for d in self.diffs]
        if self.missed:
            lines.append("missed records (central's integration log, kind=missed):")
            for device, records in sorted(self.missed.items()):
                total = Counter[str]()
                for r in records:
                    total.update(r)
                amounts = ", ".join(f"{k} {v}" for k, v in sorted(total.items()) if v)
                lines.append(f"  {device}: {len(records)} record(s): {amounts or 'no amounts'}")
        else:
            lines.append("missed records: none")
        lines += [f"note: {n}" for n in self.notes]
        lines += self.diagnosis
        lines.append(f"work directory: {self.work}" + (" (removed)" if self.removed else ""))
        return "\n".join(lines)


# -- the disk the agent writes to ----------------------------------------------------------------------

class SmallDisk:
    """A tmpfs of ``size_mb`` mounted on the agent's data directory (root only), so a file can fill it."""

    def __init__(self, mount: Path, size_mb: int) -> None:
        self.mount, self.size_mb = mount, size_mb
        self.filler = mount / ".chaos-filler"
        self.mounted = False

    def try_mount(self) -> str | None:
        """Mount; None on success, else why not (the campaign then goes on without disk_full)."""
        if os.geteuid() != 0:
            return "disk_full skipped: mounting a tmpfs for the agent's data needs root"
        self.mount.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0700", "tmpfs",
                               str(self.mount)], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            return f"disk_full skipped: cannot mount a tmpfs on {self.mount}: {done.stderr.strip()}"
        self.mounted = True
        return None

    def fill(self) -> int:
        """Write the filler until the filesystem has no byte left; the bytes written."""
        written = 0
        with open(self.filler, "ab", buffering=0) as fh:
            for size in (1 << 20, 65536, 4096, 512, 1):
                chunk = b"\0" * size
                try:
                    while True:
                        written += fh.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def unmount(self, keep_copy: Path | None) -> None:
        """Free, copy the agent's files out when asked (a tmpfs forgets them), and unmount."""
        if not self.mounted:
            return
        self.free()
        if keep_copy is not None:
            with contextlib.suppress(OSError):
                shutil.copytree(self.mount, keep_copy, dirs_exist_ok=True)
        if subprocess.run(["umount", str(self.mount)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(self.mount)], capture_output=True, timeout=30)
        self.mounted = False


# -- the hall --------------------------------------------------------------------------------------------

@dataclass
class Active:
    """A fault in progress on ``target``, undone at ``until`` (monotonic) by ``undo``."""

    kind: str
    target: str
    until: float
    undo: Callable[[], None]
    cut_at_end: bool = True   # undone at once when the floor has played its rounds


class Campaign:
    """Owns every process of one campaign; :meth:`close` stops them all, whatever state they are in."""

    def __init__(self, cfg: ChaosConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"chaos:{cfg.seed}")
        self.work = cfg.work if cfg.work is not None else work_dir(None, "hallsync-chaos-")
        self.work.mkdir(parents=True, exist_ok=True)
        self.floor_dir = self.work / "floor"
        self.agent_dir = self.work / "agent"
        self.t0 = time.monotonic()
        self.notes: list[str] = []
        self.injected: Counter[str] = Counter()
        self.fault_log: list[dict[str, Any]] = []   # written to WORK/faults.json: when, what, how long
        self.active: dict[str, Active] = {}
        self.hogs: list[subprocess.Popen[bytes]] = []
        self.broker: Mosquitto | None = None
        self.floor: Proc | None = None
        self.agent: Proc | None = None
        self.central: Proc | None = None
        self.disk: SmallDisk | None = None
        self.stopped_agent = False
        self.kinds = list(cfg.kinds)
        self.admin = ""
        self.base = ""
        self.last_restart: dict[str, float] = {}

    # ---- output ----------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.cfg.log(f"[{time.monotonic() - self.t0:7.1f}s] {text}")

    # ---- start -------------------------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        for _ in range(cfg.hogs):
            self.hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if "disk_full" not in self.kinds or not cfg.faults:
            with contextlib.suppress(ValueError):
                self.kinds.remove("disk_full")    # no random faults: the agent's data stays on the real disk
        else:
            self.disk = SmallDisk(self.agent_dir, cfg.disk_mb)
            why = self.disk.try_mount()
            if why is not None:
                self.say(why)
                self.notes.append(why)
                self.kinds.remove("disk_full")
                self.disk = None
        central_dir, agent_dir, db = setup_hq(self.work, HALL)
        assert agent_dir == self.agent_dir
        self.admin = cli("hall-central", "apikeys", "create", "--role", "admin", "--db", str(db))
        self.broker, url = start_broker(self.work, None)
        assert isinstance(self.broker, Mosquitto)
        port = free_port()
        self.base = f"http://127.0.0.1:{port}/api/v1"
        floor_args = [str(BIN / "hall-sim"), "floor", "--egms", str(cfg.egms), "--terminals", str(cfg.terminals),
                      "--rounds", str(cfg.rounds), "--pace", str(cfg.pace), "--seed", str(cfg.seed),
                      "--wait-for-host", "--wire-faults", str(cfg.wire), "--out", str(self.floor_dir)]
        self.floor = Proc("floor", floor_args, self.work).start()
        self.wait(lambda: (self.floor_dir / "devices.toml").exists(), 30, "the floor's devices.toml")
        self.central = start_central(self.work, central_dir, db, url, port, log_level="info")
        self.agent = Proc("agent", [str(BIN / "hall-agent"), "run", "--hall", HALL, "--data-dir", str(agent_dir),
                                    "--devices", str(self.floor_dir / "devices.toml"), "--mqtt", url,
                                    "--central-key", str(central_dir / "central.pub"),
                                    "--meter-interval", str(cfg.meter_interval),
                                    "--meter-settle", str(cfg.meter_settle),
                                    "--log-level", "info", "--log-format", "json"], self.work).start()

    def wait(self, check: Callable[[], object], timeout: float, what: str) -> object:
        """Poll ``check`` (errors count as not yet) until truthy, keeping the hall alive meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = check()
                if found:
                    return found
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                pass
            self.tick()
            time.sleep(TICK)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.tails()}")

    def tails(self, n: int = 25) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail(n)}" for p in (self.floor, self.agent, self.central) if p)

    # ---- the loop's housekeeping -------------------------------------------------------------------------
    def tick(self) -> None:
        """Undo what is due, and restart a process that died although no fault was holding it down."""
        now = time.monotonic()
        for target, act in list(self.active.items()):
            if now >= act.until:
                del self.active[target]
                act.undo()
        assert self.floor is not None
        if not self.floor.alive():
            raise RuntimeError(f"the floor exited ({self.floor.proc and self.floor.proc.returncode}):\n"
                               f"{self.floor.tail()}")
        for name, proc in (("agent", self.agent), ("central", self.central)):
            if proc is None or proc.alive() or name in self.active:
                continue
            if now - self.last_restart.get(name, 0.0) < 2.0:
                continue
            code = proc.proc.returncode if proc.proc is not None else None
            self.notes.append(f"{name} exited by itself (exit code {code}) at {now - self.t0:.0f} s; restarted")
            self.say(f"{name} exited by itself (exit code {code}); restarting it\n{proc.tail(8)}")
            self.last_restart[name] = now
            proc.start()
        if self.broker is not None and "broker" not in self.active and (
                self.broker.proc is None or self.broker.proc.poll() is not None):
            self.notes.append(f"the broker exited by itself at {now - self.t0:.0f} s; restarted")
            self.broker.start()

    # ---- faults --------------------------------------------------------------------------------------------
    def pick(self) -> str | None:
        """The next kind whose target is free, dealt from a shuffled deck of the enabled kinds (each kind
        once per round of the deck), or None while every target is busy."""
        free = [k for k in self.kinds if TARGET[k] not in self.active]
        if not free:
            return None
        if not getattr(self, "_deck", None):
            self._deck = list(self.kinds)
            self.rng.shuffle(self._deck)
        for kind in list(self._deck):
            if kind in free:
                self._deck.remove(kind)
                return kind
        return None

    def inject(self, kind: str) -> None:
        rng, now = self.rng, time.monotonic()
        assert self.agent is not None and self.central is not None and self.broker is not None
        agent, central, broker = self.agent, self.central, self.broker
        if kind == "agent_kill":
            hold = rng.uniform(0.2, 3.0)
            self._kill(agent)
            self.active["agent"] = Active(kind, "agent", now + hold, lambda: self._restart("agent", agent))
        elif kind == "agent_stop":
            hold = rng.uniform(1.0, 8.0)
            self._signal(agent, signal.SIGSTOP)
            self.stopped_agent = True
            self.active["agent"] = Active(kind, "agent", now + hold, self._resume_agent)
        elif kind == "central_kill":
            hold = rng.uniform(0.5, 5.0)
            self._kill(central)
            self.active["central"] = Active(kind, "central", now + hold, lambda: self._restart("central", central))
        elif kind == "central_outage":
            hold = float(self.cfg.central_outage or 0)
            central.stop(20)
            self.active["central"] = Active(kind, "central", now + hold, lambda: self._restart("central", central),
                                            cut_at_end=False)
        elif kind == "broker_kill":
            hold = rng.uniform(0.5, 5.0)
            broker.kill()
            self.active["broker"] = Active(kind, "broker", now + hold, self._restart_broker)
        elif kind == "disk_full":
            assert self.disk is not None
            hold = rng.uniform(2.0, 10.0)
            written = self.disk.fill()   # the hold starts once the disk is full (filling takes a while)
            self.active["agent"] = Active(kind, "agent", time.monotonic() + hold, self._free_disk)
            self._record(kind, now, hold, f" ({written >> 20} MiB of filler)")
            return
        else:
            raise ValueError(kind)
        self._record(kind, now, hold, "")

    def _record(self, kind: str, at: float, hold: float, extra: str) -> None:
        self.injected[kind] += 1
        self.fault_log.append({"n": sum(self.injected.values()), "kind": kind, "at_s": round(at - self.t0, 2),
                               "wall": time.time() - (time.monotonic() - at), "hold_s": round(hold, 2)})
        self.say(f"fault {sum(self.injected.values())}: {kind}{extra}, for {hold:.1f} s")

    def _signal(self, proc: Proc, sig: int) -> bool:
        if not proc.alive():
            return False
        assert proc.proc is not None
        with contextlib.suppress(ProcessLookupError):
            proc.proc.send_signal(sig)
        return True

    def _kill(self, proc: Proc) -> None:
        if self._signal(proc, signal.SIGKILL):
            assert proc.proc is not None
            proc.proc.wait(10)
        else:
            self.notes.append(f"{proc.name} was not running when a fault was to kill it")

    def _restart(self, name: str, proc: Proc) -> None:
        if not proc.alive():
            self.last_restart[name] = time.monotonic()
            proc.start()

    def _resume_agent(self) -> None:
        if self.agent is not None:
            self._signal(self.agent, signal.SIGCONT)
        self.stopped_agent = False

    def _restart_broker(self) -> None:
        assert self.broker is not None
        self.broker.start()

    def _free_disk(self) -> None:
        if self.disk is not None:
            self.disk.free()

    def undo_all(self) -> None:
        """End every fault that should end with the play (a central outage runs its course)."""
        for target, act in list(self.active.items()):
            if act.cut_at_end:
                del self.active[target]
                act.undo()

    # ---- central ------------------------------------------------------------------------------------------
    def get(self, path: str) -> dict[str, Any]:
        return api(f"{self.base}{path}", self.admin)

    def central_up(self) -> bool:
        return bool(self.get("/health").get("status") == "ok")

    def has_bets(self) -> bool:
        return any(r["bets"] for r in self.get(f"/reports/ggr?group_by=device&hall={HALL}")["rows"])

    def missed_records(self) -> dict[str, list[dict[str, int]]]:
        """Every ``missed`` row of the integration log, per device, with its amounts (paged newest first
        by time; a detail names its event's seq, so a row seen twice is counted once)."""
        seen: dict[str, tuple[str, dict[str, int]]] = {}
        to: int | None = None
        while True:
            query = {"hall": HALL, "kind": "missed", "limit": str(PAGE)}
            if to is not None:
                query["to"] = str(to + 1)
            rows = self.get(f"/integration-log?{urllib.parse.urlencode(query)}")["rows"]
            new = [r for r in rows if r["detail"] not in seen]
            for r in new:
                seen[r["detail"]] = (r.get("device") or "?", _amounts(r["detail"]))
            if len(rows) < PAGE or not new:
                break
            to = min(r["time_us"] for r in rows)
        out: dict[str, list[dict[str, int]]] = {}
        for device, amounts in seen.values():
            out.setdefault(device, []).append(amounts)
        return out

    def expected(self, truth: dict[str, Any]) -> tuple[dict[str, dict[str, int]], list[str]]:
        """What central must show (terminals net of their first baseline); notes on odd baselines."""
        baselines, notes = {}, []
        for device, t in truth.items():
            if t["kind"] != "terminal":
                continue
            found = terminal_baselines(self.base, self.admin, HALL, device)
            if found:
                baselines[device] = found[0]
            if len(found) != 1:
                notes.append(f"{device}: {len(found)} baseline events at central (expected 1; the first is used)")
        return expected(truth, baselines), notes

    # ---- stop ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything, bounded: SIGCONT first (a stopped process cannot act on SIGTERM)."""
        with contextlib.suppress(OSError):
            (self.work / "faults.json").write_text(json.dumps(self.fault_log, indent=1) + "\n")
        if self.agent is not None and self.stopped_agent:
            self._signal(self.agent, signal.SIGCONT)
        if self.disk is not None:
            self.disk.free()
        for proc in (self.agent, self.central, self.floor):
            if proc is not None:
                with contextlib.suppress(Exception):
                    proc.stop(15)
        if self.broker is not None:
            with contextlib.suppress(Exception):
                self.broker.stop()
        for hog in self.hogs:
            with contextlib.suppress(ProcessLookupError):
                hog.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                hog.wait(5)
        if self.disk is not None:
            self.disk.unmount(self.work / "agent-data" if self.cfg.keep else None)


def _amounts(detail: str) -> dict[str, int]:
    """The amounts of a ``missed`` detail (``seq N: meters show activity the events missed: {...}``)."""
    start = detail.find("{")
    try:
        value = ast.literal_eval(detail[start:]) if start >= 0 else {}
    except (ValueError, SyntaxError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, int) and not k.endswith(("_time", "_seq", "seq"))}


# -- one campaign ------------------------------------------------------------------------------------------

def source_version() -> str:
    """Which code ran: the commit, and how many files of the running parts differ from it (a shared
    checkout often holds work in progress; a difference found must name what it was found in)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "agent", "central",
                                "protocols", "firmware_sim", "mqttlink"], capture_output=True, text=True,
                               timeout=10).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    extra = f" + {len(dirty)} uncommitted file(s) in agent/central/protocols/..." if dirty else ""
    return f"{head or 'unknown'}{extra}"


def run_campaign(config: ChaosConfig) -> ChaosResult:
    """Play, inject, drain, compare; stops everything it started before it returns or raises."""
    cfg = config.resolved()
    hall = Campaign(cfg)
    cfg.log(f"chaos: work directory {hall.work}; code {source_version()}")
    result: ChaosResult | None = None
    try:
        result = _run(hall)
        return result
    finally:
        hall.close()   # the floor, stopped, has written what its wires did to the end
        if result is not None:
            result.wire = _wire(hall.floor_dir)
        if result is not None and result.ok and cfg.work is None and not cfg.keep:
            shutil.rmtree(hall.work, ignore_errors=True)
            result.removed = True


def _run(hall: Campaign) -> ChaosResult:
    cfg = hall.cfg
    assert cfg.rounds is not None and cfg.minutes is not None and cfg.faults is not None
    hall.start()
    hall.wait(hall.has_bets, 60, "the first bets at central")
    play_start = time.monotonic()
    window = cfg.minutes * 60
    hall.say(f"playing: {cfg.rounds} rounds per device (about {window:.0f} s), {cfg.faults} random faults "
             f"of {', '.join(hall.kinds) or 'no kind'}, wire {cfg.wire}, {cfg.hogs} hogs")
    truth_file = hall.floor_dir / "truth.json"

    schedule: list[tuple[float, str]] = []
    if cfg.mode == "offline-hq" and cfg.central_outage:
        schedule.append((play_start, "central_outage"))
    elif cfg.central_outage:
        schedule.append((play_start + hall.rng.uniform(0.05, 0.5) * window, "central_outage"))
    if hall.kinds and cfg.faults:
        # spread over 5..75 % of the expected play, one per slot at a random point of it: every fault
        # lands while the floor plays, and the hall has the last quarter to recover before the drain
        gap = 0.7 * window / cfg.faults
        schedule += [(play_start + 0.05 * window + gap * (i + hall.rng.random()), "") for i in range(cfg.faults)]
    schedule.sort()
    # the floor may play slower than the estimate (machines locked by a full disk, a loaded CPU): allow it
    play_deadline = play_start + window * 3 + 120
    while not truth_file.exists():
        now = time.monotonic()
        if now > play_deadline:
            raise TimeoutError(f"the floor did not finish its rounds within {play_deadline - play_start:.0f} s\n"
                               f"{hall.tails()}")
        if schedule and now >= schedule[0][0]:
            kind = schedule[0][1] or hall.pick()
            if kind is not None and (kind != "central_outage" or "central" not in hall.active):
                schedule.pop(0)
                hall.inject(kind)
        hall.tick()
        time.sleep(TICK)
    play_end = time.monotonic()
    if schedule:
        hall.notes.append(f"{len(schedule)} scheduled fault(s) not injected: the floor finished first")
    hall.say(f"the floor has played its rounds ({play_end - play_start:.0f} s); undoing faults, draining")
    hall.undo_all()

    drain_start = time.monotonic()
    got, want, extra = _drain(hall, truth_file, play_end)
    hall.notes += extra
    drain_end = time.monotonic()
    diffs = differences(got, want)
    missed = hall.missed_records()
    diagnosis = _diagnose(hall, sorted({d.device for d in diffs})) if diffs else []
    return ChaosResult(cfg, hall.work, hall.injected, {}, want, got, diffs, missed, hall.notes, diagnosis,
                       play_end - play_start, drain_end - drain_start, time.monotonic() - hall.t0)


def _drain(hall: Campaign, truth_file: Path, idle_since: float) -> tuple[dict, dict, list[str]]:
    """Wait until the hall has said all it will: central up, every fault over, the outbox fully acked,
    and the agent's deadline for its last ``missed`` records (settle + 2 meter intervals after the
    machines went idle, or after the agent last came back) passed; then until central matches the
    truth, or its figures stop moving. Bounded by ``drain_timeout``."""
    cfg = hall.cfg
    notes: list[str] = []
    deadline = time.monotonic() + cfg.drain_timeout + float(cfg.central_outage or 0)
    truth = json.loads(truth_file.read_text())["devices"]

    def remaining() -> float:
        return max(1.0, deadline - time.monotonic())

    hall.wait(lambda: not hall.active, remaining(), "the central outage to end")
    hall.wait(hall.central_up, remaining(), "central to answer after the faults")
    want, baseline_notes = hall.expected(truth)
    notes += baseline_notes
    acked = _try_wait(hall, lambda: outbox(hall.agent_dir)["unacked_count"] == 0, remaining())
    if not acked:
        notes.append(f"drain: the agent's outbox still held unacknowledged events after {cfg.drain_timeout:.0f} s: "
                     f"{_safe(lambda: outbox(hall.agent_dir))}")
    restarts = [t for t in hall.last_restart.values()]
    judged_by = max([idle_since, *restarts]) + cfg.meter_settle + 2 * cfg.meter_interval + 2.0
    quiet = cfg.meter_settle + cfg.meter_interval + 2.0
    last: tuple[Any, ...] | None = None
    changed = time.monotonic()
    got: dict[str, dict[str, int]] = {}
    while True:
        now = time.monotonic()
        try:
            got = central_by_device(hall.base, hall.admin, HALL)
            sample = (json.dumps(got, sort_keys=True), sum(len(v) for v in hall.missed_records().values()),
                      outbox(hall.agent_dir)["unacked_count"])
        except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
            sample = None
        if sample != last:
            last, changed = sample, now
        if sample is not None and now >= judged_by and sample[2] == 0:
            if got == want or now - changed >= quiet:
                break
        if now > deadline:
            notes.append(f"drain: central's figures still moving or the outbox not empty after "
                         f"{cfg.drain_timeout:.0f} s; compared what central had then")
            break
        hall.tick()
        time.sleep(0.5)
    # the final truth: the floor rewrites it on stop with the same figures; the rounds-done copy is the one
    return got, want, notes


def _try_wait(hall: Campaign, check: Callable[[], object], timeout: float) -> bool:
    try:
        hall.wait(check, timeout, "")
        return True
    except TimeoutError:
        return False


def _safe(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except Exception as exc:
        return repr(exc)


def _wire(floor_dir: Path) -> dict[str, dict[str, int]]:
    try:
        return json.loads((floor_dir / "wire-faults.json").read_text())["devices"]
    except (OSError, ValueError, KeyError):
        return {}


def _diagnose(hall: Campaign, devices: list[str]) -> list[str]:
    """For each device that is not exact: central's reconciliation row (meters vs events vs missed),
    and the agent's warnings and errors naming it, counted by message."""
    out = ["diagnosis of the devices that are not exact:"]
    for device in devices:
        try:
            rows = hall.get(f"/reports/reconciliation?hall={HALL}&device={device}")["rows"]
        except (OSError, ValueError, KeyError) as exc:
            rows = []
            out.append(f"  {device}: reconciliation unavailable ({exc})")
        for row in rows:
            residual = {name: q["residual"] for name, q in row.get("quantities", {}).items() if q.get("residual")}
            quantities = {name: (q["meters"], q["events"], q["missed"])
                          for name, q in row.get("quantities", {}).items()}
            out.append(f"  {device} {row['day']}: reconciliation {row['reason']} ({', '.join(row['reasons'])}); "
                       f"residual {residual or 0}; meters/events/missed {quantities}")
        counts = _agent_warnings(hall.work / "agent.log", device)
        if counts:
            shown = "; ".join(f"{msg} x{n}" for msg, n in counts.most_common(8))
            out.append(f"  {device}: agent warnings: {shown}")
    return out


def _agent_warnings(log: Path, device: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        if device not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
            counts[str(entry.get("event"))[:80]] += 1
    return counts


# -- the command --------------------------------------------------------------------------------------------

def parse(argv: list[str] | None = None) -> ChaosConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1, help="seeds the floor, the wire noise and the fault schedule")
    p.add_argument("--egms", type=int, default=8, help="simulated EGMs (1..127, default 8)")
    p.add_argument("--terminals", type=int, default=2, help="simulated Modbus terminals (default 2)")
    p.add_argument("--pace", type=float, default=None, help="seconds per game per device (default 3; offline-hq 0.05)")
    p.add_argument("--rounds", type=int, default=None, help="games per device (default: what --minutes holds)")
    p.add_argument("--minutes", type=float, default=None, help="length of play (default 5)")
    p.add_argument("--faults", type=int, default=None,
                   help="random faults over the play (default one per 10 s; offline-hq 0)")
    p.add_argument("--kinds", default=",".join(FAULT_KINDS),
                   help=f"fault kinds to draw from (default all: {','.join(FAULT_KINDS)})")
    p.add_argument("--hogs", type=int, default=0, help="busy processes for the whole run (default 0)")
    p.add_argument("--mode", choices=MODES, default="random",
                   help="random: faults at random; offline-hq: central stopped for --central-outage at a fast pace")
    p.add_argument("--central-outage", type=float, default=None, metavar="SECONDS",
                   help="central stopped once for this long while the floor plays (offline-hq default: 0.8 x play)")
    p.add_argument("--wire", default=None, metavar="SPEC",
                   help=f"the floor's --wire-faults (default {DEFAULT_WIRE}; offline-hq off; 'off' for none)")
    p.add_argument("--disk-mb", type=int, default=512, help="size of the agent's tmpfs for disk_full (default 512)")
    p.add_argument("--meter-interval", type=float, default=5.0, help="the agent's --meter-interval (default 5)")
    p.add_argument("--meter-settle", type=float, default=3.0, help="the agent's --meter-settle (default 3)")
    p.add_argument("--drain-timeout", type=float, default=300.0,
                   help="longest wait for the hall to drain (default 300)")
    p.add_argument("--keep", metavar="DIR", default=None, help="work in DIR (created, must be empty) and keep it")
    a = p.parse_args(argv)
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    return ChaosConfig(seed=a.seed, egms=a.egms, terminals=a.terminals, pace=a.pace, rounds=a.rounds,
                       minutes=a.minutes, faults=a.faults, kinds=kinds, hogs=a.hogs, mode=a.mode,
                       central_outage=a.central_outage, wire=a.wire, disk_mb=a.disk_mb,
                       meter_interval=a.meter_interval, meter_settle=a.meter_settle, drain_timeout=a.drain_timeout,
                       work=work_dir(a.keep, "hallsync-chaos-") if a.keep else None, keep=bool(a.keep))


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse(argv).resolved()
    except ValueError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2

    def interrupted(signum: int, _frame: object) -> None:
        # once: a second Ctrl-C must not cut the teardown short (it is bounded anyway)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupted)
    try:
        result = run_campaign(cfg)
    except KeyboardInterrupt:
        print("chaos: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except (TimeoutError, RuntimeError, SystemExit, AssertionError) as exc:
        print(f"chaos: the campaign could not finish: {exc}", file=sys.stderr)
        return 2
    print(result.report(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
