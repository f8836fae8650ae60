"""The SAS family's own Prometheus families (agent.metrics renders them with the rest): the
coordinators' :class:`~agent.sas.stats.LinkStats` as transmissions by outcome (CRC or framing errors
are ``garbled``; ``quiet`` is a silent RTE poll, not an error), also summed per serial line, and what
says a machine is under-polled (issue 12): exception-queue overflows (70), breaks in the 7E/7F
sequence, general polls more than one interval late, each line's busy time and the event loop's lag."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Final

from protocols.metrics import Family, Kind

from .poller import SasPoller

SAS_OUTCOMES: Final = ("reply", "timeout", "garbled", "nack", "busy", "chirp")


def _one(name: str, help: str, kind: Kind, value: int | float) -> Family:
    family = Family(name, help, kind)
    family.add(value)
    return family


def sas_metric_families(poller: SasPoller) -> Iterable[Family]:
    """Per machine and per serial line: transmissions by outcome, repeats, overflows, lost game
    events, cadence misses and lateness, line busy time; and the event loop's lag."""
    dev = ("device", "port")
    per_device = Family("hallsync_agent_sas_transmissions_total", "SAS transmissions by outcome (garbled: bad "
                        "CRC, wrong length, cut short; quiet: a silent RTE poll, not an error).", "counter",
                        ("device", "port", "outcome"))
    retries = Family("hallsync_agent_sas_retries_total", "Immediate repeats of a SAS poll after a garbled or "
                     "missing reply.", "counter", dev)
    overflows = Family("hallsync_agent_sas_exception_overflows_total", "Exception 70 confirmed: the machine's "
                       "exception queue overflowed and dropped events (it was polled too slowly for its play; "
                       "their money then comes from the meters as a missed record).", "counter", dev)
    lost = Family("hallsync_agent_sas_lost_game_events_total", "Breaks in the machine's confirmed 7E/7F sequence: "
                  'lost="7F" a game started while the previous one never ended, lost="7E" a game ended that '
                  "never started (the first 7F since the agent started is not judged).", "counter",
                  ("device", "port", "lost"))
    misses = Family("hallsync_agent_sas_poll_cadence_misses_total", "General polls that went out more than one "
                    "poll interval late (after the interval since the previous one, and that one's own answer "
                    "or quiet timeout): waits behind other machines on the line, long jobs, a busy event loop.",
                    "counter", dev)
    worst = Family("hallsync_agent_sas_poll_lateness_max_seconds", "The latest a general poll to the machine "
                   "went out, in seconds after it was due, since the agent started.", "gauge", dev)
    ports: dict[str, dict[str, int | float]] = defaultdict(lambda: defaultdict(int))
    for device, coord in poller.coordinators.items():
        port, stats = coord.line.name, coord.stats
        for outcome in SAS_OUTCOMES:
            per_device.add(int(stats.outcomes[outcome]), device, port, outcome)
        per_device.add(int(stats.quiet), device, port, "quiet")
        retries.add(int(stats.retries), device, port)
        overflows.add(stats.exception_overflows, device, port)
        lost.add(stats.lost_game_ends, device, port, "7F")
        lost.add(stats.lost_game_starts, device, port, "7E")
        misses.add(stats.cadence_misses, device, port)
        worst.add(float(stats.worst_lateness), device, port)
        line = ports[port]
        line["garbled"] += stats.outcomes["garbled"]
        line["timeouts"] += stats.outcomes["timeout"]
        line["overflows"] += stats.exception_overflows
        line["lost_7F"] += stats.lost_game_ends
        line["lost_7E"] += stats.lost_game_starts
        line["misses"] += stats.cadence_misses
    yield from (per_device, retries, overflows, lost, misses, worst)
    line_garbled = Family("hallsync_agent_sas_line_garbled_total", "Garbled SAS replies (bad CRC, wrong length, "
                          "cut short) on a serial line, all its machines together.", "counter", ("port",))
    line_timeouts = Family("hallsync_agent_sas_line_timeouts_total", "SAS polls on a serial line that got no "
                           "answer in time (silent RTE polls excluded), all its machines together.", "counter",
                           ("port",))
    line_overflows = Family("hallsync_agent_sas_line_exception_overflows_total", "Exception 70 (queue overflow) "
                            "on a serial line, all its machines together.", "counter", ("port",))
    line_lost = Family("hallsync_agent_sas_line_lost_game_events_total", "Breaks in the 7E/7F sequence on a "
                       "serial line, all its machines together (see hallsync_agent_sas_lost_game_events_total).",
                       "counter", ("port", "lost"))
    line_misses = Family("hallsync_agent_sas_line_poll_cadence_misses_total", "General polls more than one poll "
                         "interval late on a serial line, all its machines together.", "counter", ("port",))
    line_busy = Family("hallsync_agent_sas_line_busy_seconds_total", "Seconds a serial line spent in "
                       "transactions (polls, replies, repeats, response timeouts); its rate is the line's "
                       "utilization: near 1 it cannot keep its machines' cadence.", "counter", ("port",))
    for port, line in ports.items():
        line_garbled.add(int(line["garbled"]), port)
        line_timeouts.add(int(line["timeouts"]), port)
        line_overflows.add(int(line["overflows"]), port)
        line_lost.add(int(line["lost_7F"]), port, "7F")
        line_lost.add(int(line["lost_7E"]), port, "7E")
        line_misses.add(int(line["misses"]), port)
    for port, sas_line in poller.lines.items():
        line_busy.add(float(sas_line.busy_seconds), sas_line.name or port)
    yield from (line_garbled, line_timeouts, line_overflows, line_lost, line_misses, line_busy)
    loop_lag = poller.loop_lag
    yield loop_lag.histogram.collect()
    yield _one("hallsync_agent_event_loop_lag_max_seconds", "The worst event-loop lag since the agent started "
               "(seconds).", "gauge", float(loop_lag.worst))


__all__ = ["SAS_OUTCOMES", "sas_metric_families"]
