"""Throughput of the sync codec: seal, encode_batch, decode_batch + verify_batch (events/s).

Run: ``.venv/bin/python bench/sync_codec.py [--batches N] [--size 1000]``. Uses realistic events
(~200 bytes of canonical JSON each: a bet with amount, currency, game, denomination, session).
One core; the end-to-end goal (≥45k events/s on 2 cores with SQLite and MQTT) leaves the codec a
budget of roughly 10 µs per event across both ends.
"""

from __future__ import annotations

import argparse
import time
import uuid

from protocols.sync import (
    GENESIS_HASH,
    Event,
    UnsealedEvent,
    decode_batch,
    encode_batch,
    encode_event,
    generate_private_key,
    seal,
    verify_batch,
)

T0 = 1_767_225_600_000_000
TYPES = ("game.bet", "game.win", "game.ended")


def make_unsealed(count: int, hall: str = "hall-01") -> list[UnsealedEvent]:
    """Events shaped like the normalizer's: one money event per game step."""
    events = []
    for i in range(count):
        kind = TYPES[i % 3]
        data: dict[str, object] = {"game": f"g-{i % 40:02d}", "denom": 1, "session": 10_000 + i // 30}
        if kind == "game.ended":
            data.update(bet_amount=100, win_amount=(i * 37) % 500)
        else:
            data.update(amount=100 + i % 900, currency="EUR")
        events.append(UnsealedEvent(
            seq=i + 1, id=str(uuid.UUID(int=i + 1)), hall=hall, device=f"egm-{i % 200:03d}", type=kind,
            device_time=T0 + i * 1000, agent_time=T0 + i * 1000 + 150, data=data,
        ))
    return events


def seal_all(unsealed: list[UnsealedEvent]) -> list[Event]:
    prev = GENESIS_HASH
    out = []
    for u in unsealed:
        e = seal(u, prev)
        prev = e.hash
        out.append(e)
    return out


def rate(label: str, events: int, seconds: float) -> None:
    print(f"{label:28s} {events / seconds:>12,.0f} events/s   ({seconds / events * 1e6:6.2f} µs/event)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--size", type=int, default=1000)
    args = parser.parse_args()
    total = args.batches * args.size
    unsealed = make_unsealed(total)
    key = generate_private_key()
    public = key.public_key()

    t = time.perf_counter()
    sealed = seal_all(unsealed)
    rate("seal", total, time.perf_counter() - t)
    print(f"{'mean event size':28s} {sum(len(encode_event(e)) for e in sealed[:1000]) / 1000:>12.0f} bytes")

    chunks = [sealed[i : i + args.size] for i in range(0, total, args.size)]
    t = time.perf_counter()
    payloads = [encode_batch(c, "hall-01", key, created_at=T0) for c in chunks]
    rate(f"encode_batch ({args.size}/batch)", total, time.perf_counter() - t)
    print(f"{'batch payload':28s} {len(payloads[0]):>12,d} bytes")

    t = time.perf_counter()
    batches = [decode_batch(p) for p in payloads]
    t_decode = time.perf_counter() - t
    t = time.perf_counter()
    for b in batches:
        verify_batch(b, public, expect_hall="hall-01")
    t_verify = time.perf_counter() - t
    rate("  decode_batch", total, t_decode)
    rate("  verify_batch", total, t_verify)
    rate("decode + verify_batch", total, t_decode + t_verify)


if __name__ == "__main__":
    main()
