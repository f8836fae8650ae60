"""Decode, verify and stage big batches in a child process: the GIL of ``hall-central serve`` is left to
the store writer, the event loop and the HTTP API.

Why a process: measured on 2 cores, decoding, checking, hashing and staging a batch is about 9 µs of
Python per event, and everything else central does per event needs the same GIL (the writer's
statements, the MQTT client, acks). In threads these only take turns; in a child the verifying runs
beside them. What crosses back is small and cheap to load: the header's canonical bytes, the staged
row values and effects as one msgpack message, and the refusal (log kind and detail) for a bad batch.
The parent keeps the payload, so the rare batch that overlaps the stored end decodes its events again
there (``StagedEvents.load_events``).

The child runs exactly the code the in-process path runs (:func:`central.ingest.decode_verify_stage`);
the result is the same :class:`central.ingest.Verified` or the same refusal. A child that dies or
hangs (``timeout``) is replaced and the batch gets an ``error`` outcome: nothing is acked, so the
hall publishes it again.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final

import msgspec
import structlog

from protocols.sync import BatchHeader, SyncError, decode_batch, public_key_from_pem
from protocols.sync.gamingday import DEFAULT_START, DEFAULT_ZONE, UTC_MIDNIGHT, DayRule
from protocols.sync.money import Contribution

from .ingest import Verified, VerifierUnavailable, decode_verify_stage
from .rollup import BatchEffects, DeviceUpdate
from .staging import MissedRecord, StagedEvents

log = structlog.get_logger("central.verify_pool")

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder()
_HEADER: Final = msgspec.json.Decoder(BatchHeader)
_KEYS: dict[str, Any] = {}
"""Parsed public keys, per child process, keyed by PEM (a replaced key is a new entry)."""


def _child_prepare(payload: bytes, pem: str, hall: str, central_time: int, zone: str = DEFAULT_ZONE,
                   start: str = DEFAULT_START) -> bytes:
    """In the child: the in-process path, packed for the parent."""
    key = _KEYS.get(pem)
    if key is None:
        if len(_KEYS) > 10_000:
            _KEYS.clear()
        key = _KEYS[pem] = public_key_from_pem(pem.encode())
    try:
        verified = decode_verify_stage(payload, key, hall, central_time, DayRule(zone, start))
    except SyncError as exc:
        return _ENCODER.encode(("refused", exc.log_kind, f"{type(exc).__name__}: {exc}"))
    staged, fx = verified.staged, verified.staged.effects
    devices = [(d, u.first_seen, u.last_seen, u.last_seq, u.kind, u.online, u.enabled, u.last_play_seq, u.money,
                u.marks, u.first_seq, u.identity_seq) for d, u in fx.devices.items()]
    rollups = [(*key, c.bets, c.wins, c.rounds, c.cash_in, c.cash_out) for key, c in fx.rollups.items()]
    hours = [(*key, *money) for key, money in fx.hours.items()]
    days = [(*key, *cell) for key, cell in fx.days.items()]
    return _ENCODER.encode(("ok", msgspec.json.encode(verified.header), verified.sig, staged.rows, rollups, devices,
                            fx.money_errors, [(m.seq, m.device, m.data) for m in staged.missed], hours, days))


def _child_ready() -> bool:
    return True


def unpack(packed: bytes, payload: bytes, hall: str, central_time: int,
           rule: DayRule = UTC_MIDNIGHT) -> Verified | tuple[str, str]:
    """The parent's half: a :class:`Verified` as the in-process path builds it, or (log kind, detail)."""
    message = _DECODER.decode(packed)
    if message[0] == "refused":
        return message[1], message[2]
    _, header, sig, rows, rollups, devices, money_errors, missed, hours, days = message
    effects = BatchEffects(
        {(r[0], r[1], r[2], r[3]): Contribution(*r[4:]) for r in rollups},
        {d[0]: DeviceUpdate(d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], [tuple(m) for m in d[9]], d[10],
                            d[11])
         for d in devices},
        [(seq, reason) for seq, reason in money_errors],
        {(h[0], h[1], h[2]): list(h[3:]) for h in hours},
        {(d[0], d[1]): list(d[2:]) for d in days},
        rule,
    )

    def load_events() -> Any:
        return decode_batch(payload).events

    staged = StagedEvents(hall, central_time, rows, effects,
                          tuple(MissedRecord(seq, device, data) for seq, device, data in missed), load_events)
    return Verified(hall, _HEADER.decode(header), sig, staged)


class VerifyPool:
    """``processes`` spawned children (1 suits 2 cores: the writer and the agent-facing broker need the
    other). Owned by ``serve``: :meth:`start` before ingest, :meth:`stop` after it."""

    def __init__(self, processes: int = 1, *, timeout: float = 60.0) -> None:
        if processes < 1:
            raise ValueError("a verify pool needs at least one process")
        self._processes = processes
        self._timeout = timeout
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent runs threads (the store's), which fork would copy mid-lock
        return ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context("spawn"))

    async def start(self) -> None:
        """Start the children and wait until they have imported everything (the first batch pays nothing)."""
        self._pool = self._new_pool()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._timeout):
            await asyncio.gather(*(loop.run_in_executor(self._pool, _child_ready) for _ in range(self._processes)))

    async def prepare(self, payload: bytes, pem: str, hall: str, central_time: int,
                      rule: DayRule = UTC_MIDNIGHT) -> Verified | tuple[str, str]:
        """Judge one batch in a child; raises :class:`VerifierUnavailable` if it could not be judged."""
        pool = self._pool
        if pool is None:
            raise VerifierUnavailable("the verify pool is not running")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                packed = await loop.run_in_executor(pool, _child_prepare, payload, pem, hall, central_time, rule.zone,
                                                    rule.start)
        except (BrokenProcessPool, TimeoutError) as exc:
            log.error("verifier_lost", hall=hall, error=repr(exc))
            await self._replace(pool)
            raise VerifierUnavailable(repr(exc)) from None
        return unpack(packed, payload, hall, central_time, rule)

    async def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is not broken:
            return   # another batch already replaced it
        self._pool = self._new_pool()
        await _shutdown(broken, terminate=True)

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await _shutdown(pool, terminate=False)


async def _shutdown(pool: ProcessPoolExecutor, *, terminate: bool) -> None:
    """Stop ``pool``'s children: at once (``terminate``: a hung child) or after their current task."""
    if terminate:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
    try:
        async with asyncio.timeout(10.0):
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
    except TimeoutError:
        log.error("verify_pool_stop_timeout")
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
