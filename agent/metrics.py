"""The agent's Prometheus metrics: what :class:`agent.runtime.HallAgent` already knows, as families.

Read, not counted twice: almost every number comes from :meth:`HallAgent.state` — the same snapshot
``hall-agent status|devices|outbox`` print (outbox chain state, replicator and link counters, command
results, per-device link state and poll counts) — so a scrape and the CLI always agree. Each device
family adds its own families (:meth:`agent.family.DeviceFamily.metric_families`): the SAS
coordinators' :class:`~agent.sas.stats.LinkStats` as transmissions by outcome (CRC or framing errors
are ``garbled``; ``quiet`` is a silent RTE poll, not an error), also summed per serial line
(:mod:`agent.sas.metrics`).
Issue 12 adds what says a machine is under-polled (its money then comes from ``missed`` records):
exception-queue overflows (70), breaks in the 7E/7F sequence, general polls more than one interval
late (all per machine with ``device`` and ``port``, and summed per line), each line's busy time and
the event loop's lag (which delays every line alike, where a busy line delays only its own machines).
The one thing nothing measured before is the outbox append latency (from the pipeline's call to the
durable commit, group-commit linger and fsync included): :class:`AgentMetrics` keeps that histogram
and the runtime feeds it once per append (one append carries up to 500 facts' events).

Rendering is synchronous and reads memory only (no database call), so a scrape costs the event loop
well under a millisecond for a hall's worth of devices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from protocols.metrics import Family, Registry
from protocols.sync.commands import RESULT_STATUSES

if TYPE_CHECKING:
    from .runtime import HallAgent

APPEND_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Outbox appends: a few ms (5 ms linger + an fsync) when healthy; seconds on a dying disk."""

# (name, help, key in the replicator's status) — counters the replicator and its link already keep
_REPLICATOR_COUNTERS: Final = (
    ("hallsync_agent_batches_published_total", "Batches the broker acknowledged (PUBACK).", "batches"),
    ("hallsync_agent_events_published_total", "Events in those batches (a resent event counts again).",
     "events_sent"),
    ("hallsync_agent_acks_received_total", "Verified acks from central (each may cover many batches).", "acks"),
    ("hallsync_agent_ack_timeouts_total", "Times no ack came in time and the replicator went back to the last "
     "ack to publish again.", "ack_timeouts"),
    ("hallsync_agent_resend_requests_total", "Resend requests from central (a gap it saw), each answered by "
     "publishing the range again.", "resend_requests"),
    ("hallsync_agent_publish_failures_total", "Batches the link could not publish (sent again from the last ack).",
     "publish_failures"),
    ("hallsync_agent_refused_messages_total", "Messages from central refused (bad signature, other hall, bad "
     "format).", "refused_messages"),
)
_LINK_COUNTERS: Final = (
    ("hallsync_agent_mqtt_connects_total", "MQTT connections made.", "connects"),
    ("hallsync_agent_mqtt_disconnects_total", "MQTT connections lost.", "disconnects"),
    ("hallsync_agent_mqtt_connect_failures_total", "MQTT connection attempts that failed.", "connect_failures"),
)


def _one(name: str, help: str, kind: str, value: int | float) -> Family:
    family = Family(name, help, kind)  # type: ignore[arg-type]
    family.add(value)
    return family


class AgentMetrics:
    """The agent's registry: the append-latency histogram plus a collector over ``agent.state()``."""

    def __init__(self, agent: HallAgent, *, clock: Callable[[], float] = time.time) -> None:
        self.agent = agent
        self.clock = clock
        self.registry = Registry()
        self.append_seconds = self.registry.histogram(
            "hallsync_agent_outbox_append_seconds",
            "Seconds from handing events to the outbox to their durable commit (linger and fsync included), "
            "per append.", buckets=APPEND_BUCKETS)
        self.registry.add(self._collect)

    def render(self) -> str:
        return self.registry.render()

    def _collect(self) -> Iterable[Family]:
        agent = self.agent
        state = agent.state()
        now = self.clock()
        yield from self._agent(state, now)
        yield from self._outbox(state["outbox"], now)
        yield from self._replicator(state["replicator"], now)
        yield from self._devices(state["devices"], now)
        for family in self.agent.families:
            yield from family.metric_families()
        yield from self._commands(state["commands"])

    def _agent(self, state: dict[str, Any], now: float) -> Iterable[Family]:
        info = Family("hallsync_agent_info", "Always 1; the labels say which hall this agent serves.", "gauge",
                      ("hall",))
        info.add(1, str(state["hall"]))
        yield info
        yield _one("hallsync_agent_start_time_seconds", "When this agent process started (Unix seconds).", "gauge",
                   float(state["started_at"]))
        yield _one("hallsync_agent_events_appended_total", "Events this process appended to the outbox.", "counter",
                   int(state["events_appended"]))
        yield _one("hallsync_agent_facts_queued", "Facts read from devices, not yet turned into events (the "
                   "pollers slow down when this fills).", "gauge", self.agent.facts.qsize())
        fail = state.get("fail_closed")
        yield _one("hallsync_agent_fail_closed", "1 while the outbox cannot commit and the agent keeps every machine "
                   "disabled (fail closed).", "gauge", int(bool(fail)))
        yield _one("hallsync_agent_fail_closed_since_seconds", "When the current fail-closed state began (Unix "
                   "seconds); 0 when not failed closed.", "gauge", float(fail["since"]) if fail else 0)

    def _outbox(self, ob: dict[str, Any], now: float) -> Iterable[Family]:
        yield _one("hallsync_agent_outbox_unacked_events", "Events committed and not yet acknowledged by central "
                   "(the outbox depth; never pruned).", "gauge", int(ob["unacked_count"]))
        yield _one("hallsync_agent_outbox_last_seq", "The last committed seq of this hall's chain.", "gauge",
                   int(ob["last_seq"]))
        yield _one("hallsync_agent_outbox_acked_through_seq", "The last seq central acknowledged.", "gauge",
                   int(ob["acked_through"]))
        oldest = ob.get("oldest_unacked_agent_time")
        yield _one("hallsync_agent_outbox_oldest_unacked_age_seconds", "Age of the oldest unacknowledged event "
                   "(0 when everything is acknowledged).", "gauge",
                   max(0.0, now - oldest / 1_000_000) if oldest else 0)
        yield _one("hallsync_agent_outbox_pending_in_memory_events", "Events sealed but not committed yet (grows "
                   "while the outbox is failed).", "gauge", int(ob["pending_in_memory"]))
        yield _one("hallsync_agent_outbox_commits_total", "Outbox transactions committed by this process.", "counter",
                   int(ob["commits"]))
        yield _one("hallsync_agent_outbox_bytes", "Size of the outbox database file.", "gauge", int(ob["db_bytes"]))
        states = Family("hallsync_agent_outbox_state", "1 for the outbox's current state (ok, failed, stopped).",
                        "gauge", ("state",))
        for name in ("ok", "failed", "stopped"):
            states.add(int(ob["state"] == name), name)
        yield states

    def _replicator(self, rep: dict[str, Any], now: float) -> Iterable[Family]:
        yield _one("hallsync_agent_mqtt_connected", "1 while the replicator's MQTT link to HQ is up.", "gauge",
                   int(bool(rep["connected"])))
        yield _one("hallsync_agent_mqtt_session", "The presence session counter (one more per connection).", "gauge",
                   int(rep["session"]))
        yield _one("hallsync_agent_sent_through_seq", "The last seq handed to the broker on this connection.",
                   "gauge", int(rep["sent_through"]))
        last_ack = rep.get("last_ack_at")
        yield _one("hallsync_agent_last_ack_age_seconds", "Seconds since an ack from central last moved the "
                   "watermark (+Inf if none since start).", "gauge",
                   max(0.0, now - last_ack / 1_000_000) if last_ack else float("inf"))
        for name, text, key in _REPLICATOR_COUNTERS:
            yield _one(name, text, "counter", int(rep.get(key, 0)))
        link = rep.get("link", {})
        for name, text, key in _LINK_COUNTERS:
            yield _one(name, text, "counter", int(link.get(key, 0)))

    def _devices(self, devices: list[dict[str, Any]], now: float) -> Iterable[Family]:
        labels = ("device", "protocol")
        online = Family("hallsync_agent_device_online", "1 while the device answers polls (link up; a terminal "
                        "with a frozen heartbeat is not online).", "gauge", labels)
        locked = Family("hallsync_agent_device_locked", "1 while the agent keeps the device disabled because the "
                        "outbox failed (fail closed).", "gauge", labels)
        age = Family("hallsync_agent_device_last_contact_age_seconds", "Seconds since the device last answered "
                     "(absent if it never did since start).", "gauge", labels)
        polls = Family("hallsync_agent_device_polls_total", "Polls sent, as `hall-agent devices` counts them: SAS "
                       "transmissions (a repeat counts), Modbus reads of the register map.", "counter", labels)
        missed = Family("hallsync_agent_device_polls_failed_total", "Polls that failed: SAS polls every attempt of "
                        "which went unanswered, Modbus reads that failed.", "counter", labels)
        stale = Family("hallsync_agent_device_stale", "1 while a terminal answers but its heartbeat register is "
                       "frozen (Modbus only).", "gauge", ("device",))
        for d in devices:
            key = (str(d["id"]), str(d["protocol"]))
            online.add(int(bool(d.get("link_up"))), *key)
            locked.add(int(bool(d.get("locked_by_agent"))), *key)
            if d.get("last_seen"):
                age.add(max(0.0, now - float(d["last_seen"])), *key)
            polls.add(int(d.get("polls", 0)), *key)
            missed.add(int(d.get("missed_polls", 0)), *key)
            if "stale" in d:   # a family whose devices have a heartbeat (Modbus terminals)
                stale.add(int(bool(d["stale"])), key[0])
        yield from (online, locked, age, polls, missed, stale)

    def _commands(self, status: dict[str, Any]) -> Iterable[Family]:
        results = Family("hallsync_agent_commands_total", "Commands from central answered, by result (applied, "
                         "failed, expired, rejected).", "counter", ("result",))
        for result in RESULT_STATUSES:
            results.add(int(status.get(result, 0)), result)
        yield results
        yield _one("hallsync_agent_commands_received_total", "New verified commands received (repeats are "
                   "counted as duplicates).", "counter", int(status.get("received", 0)))
        yield _one("hallsync_agent_commands_refused_total", "Command messages refused (bad signature, other hall, "
                   "malformed): never applied, never answered.", "counter", int(status.get("refused", 0)))
        yield _one("hallsync_agent_commands_duplicate_total", "Commands received again (not applied again).",
                   "counter", int(status.get("duplicates", 0)))
        yield _one("hallsync_agent_commands_queued", "Commands waiting for their device.", "gauge",
                   int(status.get("queued", 0)))
