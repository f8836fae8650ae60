"""HQ monitoring: derive the alert list from what central holds, at a moment ``now``.

Two inputs, two pure functions:

* **Device conditions** come from the event stream, read once, in order, per hall (a cursor by seq):
  :func:`apply_event` turns a door opening into a ``door:<door>`` condition (gone when it closes), a
  ``game.error`` (tilt, reel, printer, memory, a terminal's error) into ``fault`` (gone when the
  machine plays again or a terminal reports no error), a pending handpay into ``handpay_pending``
  (gone at the reset), an attendant's "out of service" into ``out_of_service`` (gone with play).
  They are stored with the cursor, so a restart does not forget a door that is still open.
* **Stored state** (:class:`~central.repos.MonitorInputs`): the halls' agent presence, devices'
  online/enabled/last contact, processing delay, recent link trouble in the integration log, failed
  commands, the newest applied enable/disable command per machine and game, and how much of a
  machine's recent money came from ``missed`` records (``missed_money``: the agent under-polls it and
  loses per-game detail, issue 12; the hall-wide ``missed_events`` says only that one arrived).

:func:`evaluate` turns both into :class:`~central.repos.AlertDraft` s — the conditions that
hold *now* and deserve an alert — and the store (:meth:`sync_alerts`) raises an alert once for each
new one, leaves an open one alone while it holds (its acknowledgement is kept) and clears it when it
stops. A condition that comes back later is a new alert.

:class:`Monitor` runs this every ``interval`` seconds inside ``hall-central serve``.
Thresholds are :class:`Thresholds` (defaults below, overridable by serve flags).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from central.repos import Repositories
from central.repos.devices import DeviceCondition
from central.repos.monitor import AlertDraft, MonitorInputs
from central.timeutil import Clock, now_micros
from protocols.sync.vocabulary import is_play

log = structlog.get_logger("central.monitor")

US: Final = 1_000_000
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

ALERT_KINDS: Final = (
    "hall_offline",        # the hall agent's MQTT status is offline (its last will, or a clean stop)
    "device_offline",      # the agent says it lost the link to the machine
    "device_silent",       # no event from the machine for too long while its hall is online
    "processing_delay",    # events reach central too long after the agent wrote them
    "link_errors",         # rejected / malformed / missing batches from the hall recently
    "missed_events",       # the hall's meters showed activity its events missed (``missed`` records)
    "missed_money",        # a machine's recent money is carried by ``missed`` records above a threshold
    "door_open",           # a door open longer than allowed
    "device_fault",        # a tilt or another machine fault
    "handpay_pending",     # a handpay waiting for an attendant too long
    "out_of_service",      # the machine was taken out of service
    "machine_disabled",    # the machine is disabled (command applied, or the terminal says so)
    "game_disabled",       # a game is unavailable on a machine (disable_game applied)
    "command_failures",    # repeated failed commands to one machine
)

CONDITION_KINDS: Final = ("door_open", "device_fault", "handpay_pending", "out_of_service")
"""Alert kinds derived from the event stream (device conditions), as opposed to the store's state."""

HALL_DEVICE: Final = "agent"
"""The device id the agent uses for hall-level events (command trail): not a machine."""



@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a condition becomes an alert. Defaults are what an operator of a hall would tolerate."""

    device_silent_s: int = 1800
    """No event for 30 min: the agent snapshots meters every 15 min, so two are missing."""
    processing_delay_s: int = 60
    """An event stored more than a minute after the agent wrote it: the link or central is behind."""
    delay_window_s: int = 300
    """Only events stored in the last 5 min count for the delay (an old backlog is not "now")."""
    door_open_s: int = 300
    """A door open 5 min: longer than a routine fill or bill-stacker change."""
    handpay_pending_s: int = 600
    """A handpay not paid within 10 min: the player is waiting."""
    link_window_s: int = 300
    link_errors_min: int = 1
    """Any rejected, malformed or missing batch in the last 5 min (each is a security or data issue)."""
    failures_window_s: int = 3600
    failures_min: int = 3
    """Three failed commands to one machine within an hour: the machine does not follow orders."""
    missed_window_s: int = 3600
    """A machine is judged on its ``missed`` records of the last hour: several meter windows (15 min
    snapshots plus those at doors, bills, handpays), so one short window alone does not decide."""
    missed_share_bp: int = 500
    """5 % (basis points) of a machine's bets plus wins in the window carried by ``missed`` records: the
    per-game detail of that much play is gone and its money came from the meters instead."""
    missed_records_min: int = 4
    """Four ``missed`` records from one machine in the window: every meter window of the hour came up
    short, however small (a machine polled too slowly for its play loses a little each time)."""


DEFAULTS: Final = Thresholds()


# ---- conditions from events --------------------------------------------------------------------------

ConditionKey = tuple[str, str, str]   # (hall, device, name)


def apply_event(conditions: dict[ConditionKey, DeviceCondition], hall: str, event: Mapping[str, Any]) -> None:
    """Update ``conditions`` with one stored event (wire form: ``device``, ``type``, ``agent_time``, ``data``)."""
    device, kind, when = event["device"], event["type"], event["agent_time"]
    data = event.get("data") or {}

    def put(name: str, detail: str) -> None:
        key = (hall, device, name)
        if key not in conditions:
            conditions[key] = DeviceCondition(hall=hall, device=device, name=name, since=when, detail=detail)

    def drop(name: str) -> None:
        conditions.pop((hall, device, name), None)

    if kind == "device.door":
        door = str(data.get("door") or "main")
        if data.get("open") is True:
            put(f"door:{door}", "power off" if data.get("power_off") else "")
        elif data.get("open") is False:
            drop(f"door:{door}")
    elif kind == "game.error":
        what = data.get("name") or data.get("category") or "error"
        code = data.get("code", data.get("error_code"))
        put("fault", f"{what} (code {code})" if code is not None else str(what))
    elif is_play(kind):
        drop("fault")
        drop("out_of_service")
    elif kind == "device.status":
        status = data.get("status")
        if status == "handpay_pending" or (status == "handpay_info" and data.get("kind") == "jackpot"):
            amount = data.get("amount")
            put("handpay_pending", f"amount {amount}" if type(amount) is int else "")
        elif status == "handpay_reset":
            drop("handpay_pending")
        if data.get("error") is False:          # a terminal's status: its error flag went down
            drop("fault")
        if data.get("door_open") is False:      # a terminal's status also carries its door
            drop("door:main")
        elif data.get("door_open") is True:     # e.g. open already at its enrollment baseline
            put("door:main", "")
    elif kind == "handpay":
        drop("handpay_pending")
    elif kind == "service":
        if data.get("kind") == "out_of_service":
            put("out_of_service", str(data.get("name") or ""))


def with_last_play(events: list[dict[str, Any]], last_play: Mapping[str, int]) -> list[dict[str, Any]]:
    """``events`` with each device's last game event of the same range put back in seq order.

    Only the last one is needed: a fault (or out-of-service) is over iff the machine played after the
    last event that reported it, so earlier game events cannot change the end state."""
    plays = [{"seq": seq, "device": device, "type": "game.ended", "agent_time": 0, "data": {}}
             for device, seq in last_play.items()]
    return sorted([*events, *plays], key=lambda e: e["seq"])


# ---- evaluation ----------------------------------------------------------------------------------------

def _seconds(micros: int) -> int:
    return micros // US


def _iso(micros: int) -> str:
    """UTC time for a human reading the alert (seconds are enough)."""
    return (_EPOCH + dt.timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%SZ")


def evaluate(inputs: MonitorInputs, conditions: Iterable[DeviceCondition], now: int,
             th: Thresholds = DEFAULTS) -> list[AlertDraft]:
    """The alert-worthy conditions that hold at ``now`` (microseconds), one draft per alert identity."""
    online = {hall.id for hall in inputs.halls if hall.online is True}
    retired = {hall.id for hall in inputs.halls if hall.state == "removed"}   # halls remove: nobody to call
    drafts = [*_hall_alerts(inputs, th), *_device_alerts(inputs, online, now, th), *_command_alerts(inputs, th),
              *_missed_alerts(inputs, th), *_condition_alerts(conditions, now, th)]
    return [d for d in drafts if d.hall not in retired] if retired else drafts


def _hall_alerts(inputs: MonitorInputs, th: Thresholds) -> Iterator[AlertDraft]:
    for hall in inputs.halls:
        if hall.online is False:
            since = f" since {_iso(hall.status_at)}" if hall.status_at is not None else ""
            yield AlertDraft(hall.id, None, "hall_offline", "", f"hall agent offline (session {hall.session}){since}")
        delay = inputs.delays.get(hall.id)
        if delay is not None and delay > th.processing_delay_s * US:
            yield AlertDraft(hall.id, None, "processing_delay", "",
                             f"events reach central {_seconds(delay)} s after the agent wrote them "
                             f"(limit {th.processing_delay_s} s)")
        errors = dict(inputs.link_errors.get(hall.id, {}))
        missed = errors.pop("missed", 0)
        if missed:
            yield AlertDraft(hall.id, None, "missed_events", "",
                             f"{missed} missed record(s) in the last {th.link_window_s} s: meters moved more than "
                             f"the events said (see the integration log and the reconciliation)")
        if sum(errors.values()) >= th.link_errors_min:
            listed = ", ".join(f"{kind} {count}" for kind, count in sorted(errors.items()))
            yield AlertDraft(hall.id, None, "link_errors", "", f"in the last {th.link_window_s} s: {listed}")


def _device_alerts(inputs: MonitorInputs, online_halls: set[str], now: int, th: Thresholds) -> Iterator[AlertDraft]:
    """Offline as the agent says; silent only in a hall that is online (else its hall alert covers it)."""
    for dev in inputs.devices:
        if dev.id == HALL_DEVICE:
            continue
        if dev.online is False:
            yield AlertDraft(dev.hall, dev.id, "device_offline", "",
                             f"the agent lost the link to the machine; last event at {_iso(dev.last_seen)}")
        elif dev.hall in online_halls and now - dev.last_seen > th.device_silent_s * US:
            yield AlertDraft(dev.hall, dev.id, "device_silent", "",
                             f"no event for {_seconds(now - dev.last_seen)} s (limit {th.device_silent_s} s)")
        if not dev.enabled:
            yield AlertDraft(dev.hall, dev.id, "machine_disabled", "", "the machine reports itself disabled")


def _command_alerts(inputs: MonitorInputs, th: Thresholds) -> Iterator[AlertDraft]:
    """What the newest applied enable/disable says is off, and machines that keep failing commands."""
    for (hall, device, game), (action, at) in inputs.switches.items():
        if action == "disable_machine":
            yield AlertDraft(hall, device, "machine_disabled", "command",
                             f"disabled by a command applied at {_iso(at)}")
        elif action == "disable_game" and game is not None:
            yield AlertDraft(hall, device, "game_disabled", game,
                             f"game {game} disabled by a command applied at {_iso(at)}")
    for (hall, device), count in inputs.failed_commands.items():
        if count >= th.failures_min:
            yield AlertDraft(hall, device, "command_failures", "",
                             f"{count} commands failed in the last {th.failures_window_s} s")


def _missed_alerts(inputs: MonitorInputs, th: Thresholds) -> Iterator[AlertDraft]:
    """A machine whose money comes from ``missed`` records above :attr:`Thresholds.missed_share_bp` or
    :attr:`Thresholds.missed_records_min`: an under-polled line (on the agent's ``/metrics``:
    ``hallsync_agent_sas_exception_overflows_total``, ``…_poll_cadence_misses_total``) or an agent that
    keeps being killed between an ACK and its commit. GGR stays right (the meters carry it); the alert is
    for the detail lost and for the cause to be fixed."""
    for (hall, device), m in sorted(inputs.missed.items()):
        if device == HALL_DEVICE or m.records == 0:
            continue
        share_bp = (m.missed * 10_000 + m.turnover // 2) // m.turnover if m.turnover > 0 else 0
        if share_bp >= th.missed_share_bp or m.records >= th.missed_records_min:
            yield AlertDraft(hall, device, "missed_money", "",
                             f"{share_bp / 100:.1f} % of bets and wins since {_iso(m.since)} ({m.missed} of "
                             f"{m.turnover}) came from {m.records} missed record(s) (limit "
                             f"{th.missed_share_bp / 100:g} % or {th.missed_records_min} records in "
                             f"{th.missed_window_s} s): the agent misses this machine's games; check its line "
                             f"(exception overflows, poll cadence on the agent's /metrics)")


def _condition_alerts(conditions: Iterable[DeviceCondition], now: int, th: Thresholds) -> Iterator[AlertDraft]:
    for c in conditions:
        age = now - c.since
        if c.name.startswith("door:"):
            if age > th.door_open_s * US:
                door = c.name.split(":", 1)[1]
                extra = f", {c.detail}" if c.detail else ""
                yield AlertDraft(c.hall, c.device, "door_open", door, f"{door} door open for {_seconds(age)} s{extra}")
        elif c.name == "fault":
            yield AlertDraft(c.hall, c.device, "device_fault", "", c.detail)
        elif c.name == "handpay_pending":
            if age > th.handpay_pending_s * US:
                yield AlertDraft(c.hall, c.device, "handpay_pending", "",
                                 f"handpay waiting {_seconds(age)} s {c.detail}".strip())
        elif c.name == "out_of_service":
            yield AlertDraft(c.hall, c.device, "out_of_service", "", c.detail or "out of service")


# ---- the periodic task ---------------------------------------------------------------------------------

@dataclass
class TickResult:
    events_read: int = 0
    raised: int = 0
    cleared: int = 0
    active: int = 0
    behind: int = 0


LEASE: Final = "monitor"
"""The lease whose holder runs the alert monitor (central.repos.leases)."""


@dataclass
class Monitor:
    """Runs the evaluator every ``interval`` seconds: read new events, evaluate, sync the alert table.

    Events are read in seq ranges of ``page``, at most ``max_rows`` seqs per tick over all halls, so a
    first start on a large database (or a large backlog) catches up over several ticks, each bounded;
    of each range only the condition-changing events and each device's last game event are decoded.
    While a hall is behind, its event-derived alerts (:data:`CONDITION_KINDS`) are held as they are —
    neither raised from half-read history nor cleared — until its cursor reaches the hall's end. Each tick is
    bounded by ``tick_timeout``; a failing tick is logged and the next one tries again.
    """

    store: Repositories
    clock: Clock = now_micros
    thresholds: Thresholds = DEFAULTS
    interval: float = 15.0
    page: int = 50_000
    max_rows: int = 1_000_000
    tick_timeout: float = 60.0
    lease_owner: str | None = None
    """Set when several processes may run a monitor on one database: only the holder of the
    ``monitor`` lease (:data:`LEASE`) ticks; the others wait and take over when it lapses. None: this
    monitor always ticks (one process, or tests)."""
    _leading: bool = False
    _cursors: dict[str, int] | None = None
    _saved: dict[str, int] = field(default_factory=dict)
    _conditions: dict[ConditionKey, DeviceCondition] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    last: TickResult = field(default_factory=TickResult)

    async def tick(self) -> TickResult:
        """One evaluation; returns what it did (tests call this directly)."""
        result = TickResult()
        if self._cursors is None:
            cursors, conditions = await self.store.monitor.monitor_state()
            self._cursors = dict(cursors)
            self._saved = dict(cursors)
            self._conditions = {(c.hall, c.device, c.name): c for c in conditions}
        behind: set[str] = set()
        for hall in await self.store.halls.halls():
            cursor = self._cursors.get(hall.id, 0)
            while cursor < hall.last_seq and result.events_read < self.max_rows:
                through = min(hall.last_seq, cursor + self.page)
                events, last_play = await self.store.monitor.monitor_events(hall.id, after_seq=cursor,
                                                                            through_seq=through)
                for row in with_last_play(events, last_play):
                    apply_event(self._conditions, hall.id, row)
                result.events_read += through - cursor
                cursor = through
            self._cursors[hall.id] = cursor
            if cursor < hall.last_seq:
                behind.add(hall.id)
        now = self.clock()
        th = self.thresholds
        inputs = await self.store.monitor.monitor_inputs(delay_since=now - th.delay_window_s * US,
                                                 link_since=now - th.link_window_s * US,
                                                 failures_since=now - th.failures_window_s * US,
                                                 missed_since=now - th.missed_window_s * US)
        drafts = [d for d in evaluate(inputs, self._conditions.values(), now, th)
                  if not (d.hall in behind and d.kind in CONDITION_KINDS)]
        result.active = len(drafts)
        result.behind = len(behind)
        moved = {hall: seq for hall, seq in self._cursors.items() if self._saved.get(hall) != seq}
        result.raised, result.cleared = await self.store.monitor.sync_alerts(
            drafts, now=now, cursors=moved, conditions=list(self._conditions.values()),
            hold=[(hall, kind) for hall in sorted(behind) for kind in CONDITION_KINDS])
        self._saved.update(moved)
        if result.raised or result.cleared:
            log.info("alerts_changed", raised=result.raised, cleared=result.cleared, active=result.active)
        self.last = result
        return result

    @property
    def lease_ttl_us(self) -> int:
        """Long enough that a holder renewing every ``interval`` keeps it through a slow tick; short
        enough that a dead holder's job moves within a minute or two at the default interval."""
        return int((2 * self.interval + self.tick_timeout) * 1_000_000)

    @property
    def leading(self) -> bool:
        """Whether this monitor evaluates (holds the lease, or runs without one)."""
        return self.lease_owner is None or self._leading

    async def lead(self) -> bool:
        """Take or renew the lease (the loop does, before each tick); whether this monitor leads now.
        A store error counts as not leading (another process may hold it)."""
        assert self.lease_owner is not None
        try:
            now = await self.store.leases.acquire(LEASE, self.lease_owner, now=self.clock(), ttl_us=self.lease_ttl_us)
        except Exception as exc:
            log.error("monitor_lease_failed", error=repr(exc))
            now = False
        if now != self._leading:
            log.info("monitor_leader" if now else "monitor_follower", owner=self.lease_owner)
            self._cursors = None   # the other holder moved the stored cursors: read them again
        self._leading = now
        return now

    async def run(self) -> None:
        while True:
            if self.lease_owner is not None:
                await self.lead()
            if self.leading:
                await self._tick_bounded()
            await asyncio.sleep(self.interval)

    async def _tick_bounded(self) -> None:
        try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            async with asyncio.timeout(self.tick_timeout):
                await self.tick()
        except TimeoutError:
            log.error("monitor_tick_timeout", seconds=self.tick_timeout)
            self._cursors = None  # reload the stored state: this tick's progress was not saved
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("monitor_tick_failed", error=repr(exc))
            self._cursors = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="central-monitor")

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel the loop and wait for it (bounded); a tick in progress is rolled back by its transaction."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                log.error("monitor_did_not_stop", seconds=timeout)
        if self.lease_owner is not None and self._leading:   # hand the job over now, not at expiry
            self._leading = False
            try:
                async with asyncio.timeout(timeout):
                    await self.store.leases.release(LEASE, self.lease_owner)
            except Exception as exc:
                log.warning("monitor_lease_not_released", error=repr(exc))
