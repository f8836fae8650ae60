"""Issue one command to a hall: create, store, sign, publish, record the outcome.

Shared by ``POST /commands`` (one command) and the network-wide rules (many commands at once), so a
command issued by a rule is stored, logged and published exactly like one sent by hand. Validation of
the request is the caller's job; this function trusts its arguments.
"""

from __future__ import annotations

import uuid
from typing import Protocol

import structlog

from central import audit
from central.commands import CommandNotPublished
from central.repos import HasAudit, HasCommands
from central.repos.commands import CommandRecord
from protocols.sync import VERSION, Command, encode_command, topic
from protocols.sync.commands import is_action

from .context import ApiContext

log = structlog.get_logger("central.api")


class IssueTarget(HasAudit, HasCommands, Protocol):
    """What issuing a command writes: the command record and its audit entry."""


async def issue_command(ctx: ApiContext, store: IssueTarget, *, hall: str, device: str, action: str, game: str | None,
                        ttl_seconds: int, created_by: str, detail: str | None = None) -> CommandRecord:
    """Store a new ``pending`` command, publish it signed, and return the stored record afterwards.

    The record is stored before publishing so a result that races the bookkeeping finds it; the
    status after publishing is ``sent`` (PUBACK), ``failed`` (certainly not published, or central has no
    MQTT link) or still ``pending`` with the error as detail (the broker may have it anyway).
    """
    if not is_action(action):
        raise ValueError(f"unknown command action {action!r}")  # the callers check it: a bug if reached
    now = ctx.clock()
    command = Command(v=VERSION, id=str(uuid.uuid4()), hall=hall, device=device, action=action, game=game,
                      params={}, issued_at=now, expires_at=now + ttl_seconds * 1_000_000)
    await store.commands.add_command(CommandRecord(
        id=command.id, hall=hall, device=device, action=action, game=game, params={}, issued_at=now,
        expires_at=command.expires_at, status="pending", detail=detail or f"issued by API key {created_by}",
        created_by=created_by, created_at=now, updated_at=now))
    # the one audit entry per command (issue 04): before anything leaves central; actor = created_by
    await audit.record(store.audit, time=now, actor=created_by, action="command.create",
                       target=audit.device_target(hall, device), after=audit.command_snapshot(command, created_by))
    await _publish(ctx, store, command)
    record = await store.commands.command(command.id)
    assert record is not None
    return record


async def _publish(ctx: ApiContext, store: HasCommands, command: Command) -> None:
    """Sign and publish; record ``sent``, ``failed`` or (outcome unknown) ``pending`` with a detail."""
    if ctx.command_publisher is None or ctx.central_key is None:
        await store.commands.update_command(command.id, "failed", "central has no MQTT link to publish commands",
                                            ctx.clock())
        return
    payload = encode_command(command, ctx.central_key)
    try:
        await ctx.command_publisher(topic(command.hall, "commands"), payload)
    except CommandNotPublished as exc:
        await store.commands.update_command(command.id, "failed", f"not published: {exc}", ctx.clock())
        return
    except Exception as exc:
        log.warning("command_publish_unconfirmed", command=command.id, hall=command.hall, error=repr(exc))
        await store.commands.update_command(command.id, "pending",
                                   f"publish not confirmed ({type(exc).__name__}: {exc}); the hall's "
                                   f"result or the expiry settles it", ctx.clock())
        return
    await store.commands.update_command(command.id, "sent", "published; the broker acknowledged", ctx.clock())
