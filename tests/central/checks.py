"""Assertions shared by central's tests: totals in the store, acks and resend requests on the wire."""

from __future__ import annotations

from central.ingest import IngestOutcome
from central.repos import Repositories
from protocols.sync import Ack, ResendRequest, decode_ack, decode_resend, topic
from protocols.sync.keys import Ed25519PrivateKey
from protocols.sync.money import ZERO, Contribution


async def hall_totals(store: Repositories, hall: str) -> Contribution:
    rows = await store.reports.ggr("hall", hall=hall)
    if not rows:
        return ZERO
    (row,) = rows
    return Contribution(row.bets, row.wins, row.rounds, row.cash_in, row.cash_out)


def ack_of(outcome: IngestOutcome, central_key: Ed25519PrivateKey, hall: str) -> Ack:
    acks = [p for p in outcome.publish if p.topic == topic(hall, "acks")]
    assert len(acks) == 1, outcome
    return decode_ack(acks[0].payload, central_key.public_key(), expect_hall=hall)


def resend_of(outcome: IngestOutcome, central_key: Ed25519PrivateKey, hall: str) -> ResendRequest:
    requests = [p for p in outcome.publish if p.topic == topic(hall, "resend")]
    assert len(requests) == 1, outcome
    return decode_resend(requests[0].payload, central_key.public_key(), expect_hall=hall)
