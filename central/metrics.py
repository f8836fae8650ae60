"""Central's Prometheus metrics: ``GET /metrics`` beside the API, in the text format of :mod:`protocols.metrics`.

Where and who may scrape — ``/metrics``, outside ``/api/v1``, not behind API keys:

* it is where every Prometheus scrape config looks by default;
* API keys are people's keys with roles and hall scopes: metrics are one cross-hall view (every
  hall's counters on one page), which a hall-scoped technician key must not see, and giving the
  scraper an ``admin`` key would put a key that can disable machines into a monitoring config;
* so the scraper gets its own secret: ``serve --metrics-token TOKEN`` (or ``metrics_token`` in the
  ``--config`` file, which keeps it out of ``ps``) makes ``/metrics`` answer only
  ``Authorization: Bearer TOKEN`` (Prometheus' ``authorization: {credentials: …}``), anyone else 401;
* without a token only loopback clients may scrape (a Prometheus or node agent on the same host);
  everybody else gets 403. Behind a reverse proxy on the same host every client looks local: set a
  token there.

What is counted where (cheap on the hot path: the ingest service reports once per *batch*, never
per event; everything the store or the service already knows is read at scrape time):

* per batch (:meth:`CentralMetrics.batch`, called by :class:`central.service.IngestService`): events
  stored by hall, batches by hall and outcome (``stored``, ``duplicate``, ``gap``, ``conflict``,
  ``rejected``, ``format_error``, ``error``), the ingest latency (agent_time of the batch's oldest
  event → central's commit) and the batch processing time (off the hall's queue → committed);
* per request (a middleware): API requests by route pattern, method and status;
* per scrape: the HTTP guard's slow connections closed and connections refused, failed and
  rate-limited API logins (issue 16); halls registered/online, each hall's stored chain end and last presence time (from
  ``store.halls.halls()``), commands by status (``store.commands.command_counts()``), the ingest service's own
  counters (dropped for overload, replies not published, store errors) and its MQTT link.

Hall labels are bounded: a batch refused before its hall is known to be registered (a forged topic
can name any hall) is labelled ``_unknown``, so garbage cannot create unbounded series.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import structlog
from aiohttp import web

from central.repos import Repositories
from central.repos.commands import COMMAND_STATUSES
from protocols.metrics import CONTENT_TYPE, Family, Registry

from .api.context import Handler
from .ingest import CONFLICT_DETAIL, IngestOutcome, Verified

if TYPE_CHECKING:
    from mqttlink.httpguard import HttpGuard

    from .api.loginguard import LoginThrottle
    from .service import IngestService

log = structlog.get_logger("central.metrics")

PATH: Final = "/metrics"
UNKNOWN_HALL: Final = "_unknown"
_VERIFIED: Final = frozenset({"stored", "duplicate", "gap", "conflict"})

LATENCY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
"""Ingest latency: a linger of 50 ms at best; minutes to hours while a hall catches up after an outage."""
PROCESSING_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_SERVICE_COUNTERS: Final = (
    ("dropped_overload", "hallsync_central_batches_dropped_overload_total",
     "Batches dropped because a hall's queue was full (not acked: the agent publishes them again)."),
    ("publish_failures", "hallsync_central_replies_not_published_total",
     "Acks and resend requests that could not be published (the agent times out and publishes again)."),
    ("bad_status", "hallsync_central_bad_status_messages_total", "Presence messages that did not decode."),
    ("command_results", "hallsync_central_command_results_total", "Command results received from halls."),
    ("bad_command_results", "hallsync_central_bad_command_results_total",
     "Command results refused (bad topic, signature, unknown command or hall)."),
)


class CentralMetrics:
    """Central's instruments and its scrape-time collector (see the module docstring)."""

    def __init__(self, store: Repositories, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.service: IngestService | None = None
        self.http_guard: HttpGuard | None = None
        self.login_throttle: LoginThrottle | None = None
        self._known_halls: set[str] = set()
        r = self.registry = Registry()
        self.events = r.counter("hallsync_central_events_ingested_total",
                                "Events newly stored (duplicates not counted), by hall.", ["hall"])
        self.batches = r.counter("hallsync_central_batches_total",
                                 "Batches processed, by hall and outcome (stored, duplicate, gap, conflict, "
                                 "rejected, format_error, error).", ["hall", "outcome"])
        self.latency = r.histogram("hallsync_central_ingest_latency_seconds",
                                   "Per stored batch: seconds from the agent_time of its oldest event to central's "
                                   "commit (includes the agent's linger and any backlog; clock skew shows here).",
                                   buckets=LATENCY_BUCKETS)
        self.processing = r.histogram("hallsync_central_batch_processing_seconds",
                                      "Per batch: seconds from taking it off its hall's queue to the end of its "
                                      "commit (decode, verify, store).", buckets=PROCESSING_BUCKETS)
        self.requests = r.counter("hallsync_central_http_requests_total",
                                  "HTTP requests by route pattern, method and status.", ["route", "method", "status"])
        self._scrape_errors = 0

    # -- per batch (hot path: a few dict updates) -------------------------------------------------------

    def batch(self, outcome: IngestOutcome, prepared: IngestOutcome | Verified, seconds: float) -> None:
        """Count one processed batch; ``prepared`` is the verified batch (or the refusal)."""
        status: str = outcome.status
        if status == "rejected" and outcome.detail == CONFLICT_DETAIL:
            status = "conflict"
        hall = outcome.hall
        if hall is not None and status in _VERIFIED:
            self._known_halls.add(hall)  # signature checked against a registered key
        label = hall if hall is not None and hall in self._known_halls else UNKNOWN_HALL
        self.batches.inc(label, status)
        if outcome.stored:
            self.events.inc(label, amount=outcome.stored)
            if isinstance(prepared, Verified):
                oldest = prepared.staged.first_agent_time
                self.latency.observe(max(0.0, self.clock() - oldest / 1_000_000))
        self.processing.observe(max(0.0, seconds))

    # -- per scrape ---------------------------------------------------------------------------------------

    async def render(self) -> str:
        return self.registry.render([*await self._store_families(), *self._service_families(),
                                     *self._guard_families()])

    def _guard_families(self) -> list[Family]:
        out = []
        guard = self.http_guard
        if guard is not None:
            slow = Family("hallsync_central_http_slow_connections_closed_total",
                          "Connections closed for missing the header or body read deadline, by phase.", "counter",
                          ("phase",))
            for phase in ("headers", "body"):
                slow.add(guard.stats[f"closed_slow_{phase}"], phase)
            refused = Family("hallsync_central_http_connections_refused_total",
                             "Connections refused (503) because their address already held the per-address cap.",
                             "counter")
            refused.add(guard.stats["refused"])
            out += [slow, refused]
        throttle = self.login_throttle
        if throttle is not None:
            failed = Family("hallsync_central_api_logins_failed_total",
                            "API requests with a bad or unknown key (401).", "counter")
            failed.add(throttle.failed)
            limited = Family("hallsync_central_api_logins_rate_limited_total",
                             "API requests answered 429 (too many bad keys from their address; key not checked).",
                             "counter")
            limited.add(throttle.rate_limited)
            out += [failed, limited]
        return out

    async def _store_families(self) -> list[Family]:
        registered = Family("hallsync_central_halls", "Registered halls.", "gauge")
        online = Family("hallsync_central_halls_online", "Halls whose agent's last presence status is online.",
                        "gauge")
        hall_online = Family("hallsync_central_hall_online", "1 if the hall's agent is online, 0 if offline "
                             "(absent until its first status).", "gauge", ("hall",))
        last_seq = Family("hallsync_central_hall_last_seq", "End of the contiguous chain central holds, by hall.",
                          "gauge", ("hall",))
        status_at = Family("hallsync_central_hall_last_status_timestamp_seconds",
                           "Time (Unix seconds, the agent's clock) of the hall's last presence status.", "gauge",
                           ("hall",))
        commands = Family("hallsync_central_commands", "Commands central issued, by current status.", "gauge",
                          ("status",))
        try:
            halls = await self.store.halls.halls()
            counts = await self.store.commands.command_counts()
        except Exception as exc:  # the scrape still answers: the instruments say what happened so far
            self._scrape_errors += 1
            log.error("metrics_store_read_failed", error=repr(exc))
            return []
        registered.add(len(halls))
        online.add(sum(1 for h in halls if h.online))
        for h in halls:
            self._known_halls.add(h.id)
            last_seq.add(h.last_seq, h.id)
            if h.online is not None:
                hall_online.add(int(h.online), h.id)
            if h.status_at is not None:
                status_at.add(h.status_at / 1_000_000, h.id)
        for status in sorted({*COMMAND_STATUSES, *counts}):
            commands.add(counts.get(status, 0), status)
        return [registered, online, hall_online, last_seq, status_at, commands]

    def _service_families(self) -> list[Family]:
        service = self.service
        if service is None:
            return []
        stats = service.stats
        connected = Family("hallsync_central_mqtt_connected", "1 while central's MQTT link is connected.", "gauge")
        connected.add(int(service.link.connected))
        workers = Family("hallsync_central_ingest_workers", "Halls with a live ingest worker (recently active).",
                         "gauge")
        workers.add(int(service.status()["workers"]))
        errors = Family("hallsync_central_store_errors_total", "Store operations that failed, by operation: "
                        "ingest (a batch not stored, not acked: the agent sends it again), presence, command_result, "
                        "scrape (this endpoint's own reads).", "counter", ("operation",))
        for operation, key in (("ingest", "error"), ("presence", "presence_store_errors"),
                               ("command_result", "command_result_store_errors")):
            errors.add(int(stats.get(key, 0)), operation)
        errors.add(self._scrape_errors, "scrape")
        out = [connected, workers, errors]
        for key, name, text in _SERVICE_COUNTERS:
            family = Family(name, text, "counter")
            family.add(int(stats.get(key, 0)))
            out.append(family)
        suppressed = Family("hallsync_central_integration_log_suppressed_total",
                            "Integration-log rows not written by the per-hall throttle (counted instead).", "counter")
        suppressed.add(service.ingestor.log_rows_suppressed)
        out.append(suppressed)
        return out


# -- HTTP ----------------------------------------------------------------------------------------------------

def _loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def install(app: web.Application, metrics: CentralMetrics, *, token: str | None = None) -> None:
    """Mount ``GET /metrics`` and the request-counting middleware on central's app (before it starts).

    The middleware goes first, so it sees the status the client gets (the API's middleware turns
    errors into JSON responses inside it).
    """

    @web.middleware
    async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"  # patterns only: bounded labels
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.requests.inc(route, request.method, str(exc.status))
            raise
        except asyncio.CancelledError:  # server shutting down: no status was sent
            raise
        except Exception:
            metrics.requests.inc(route, request.method, "500")
            raise
        metrics.requests.inc(route, request.method, str(response.status))
        return response

    async def scrape(request: web.Request) -> web.Response:
        if token:
            scheme, _, presented = request.headers.get("Authorization", "").strip().partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
                return web.json_response({"error": {"code": "unauthorized",
                                                    "message": "metrics need Authorization: Bearer METRICS_TOKEN"}},
                                         status=401, headers={"WWW-Authenticate": "Bearer"})
        elif not _loopback(request.remote):
            return web.json_response({"error": {"code": "forbidden",
                                                "message": "without --metrics-token only loopback clients may "
                                                           "scrape /metrics"}}, status=403)
        body = await metrics.render()
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})

    app.middlewares.insert(0, count_requests)
    app.router.add_get(PATH, scrape)
