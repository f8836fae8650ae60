"""What the runtime needs of a device family (SAS machines, Modbus terminals, and the next ones).

A family is a folder under ``agent/`` (``agent/sas``, ``agent/modbus``) named once in
:data:`agent.families.FAMILIES`. Its ``family`` module defines ``FAMILY``, a :class:`DeviceFamily`
subclass, which the runtime builds from the typed device records of :mod:`protocols.devices`; its
``diag_cli`` module defines ``DIAGNOSTICS``, the ``hall-agent diag`` subcommands it brings
(:class:`Diagnostic`). The runtime holds a list of families and treats them alike:

* **coordinators** — one per device (:class:`DeviceCoordinator`, an :class:`agent.polling.PollCoordinator`),
  by device id (ids are unique across families); fail-closed disables and enables them all;
* **normalizer** — :class:`FamilyNormalizer`: the family's facts in, event drafts out, with the
  checkpoints the outbox commits in the same transaction;
* **facts** — a family's coordinators put their facts into the :class:`agent.polling.FactSink` the
  runtime gives it (one per family, all feeding the pipeline's one bounded queue, tagged with the
  family): no family writes into another's queue and the pipeline never asks a fact its type;
* **commands** — the actions of central's commands its devices take (:meth:`DeviceFamily.command`);
* **diagnostics** — its rows of ``hall-agent devices`` (:meth:`DeviceFamily.device_states`), its
  Prometheus families (:meth:`DeviceFamily.metric_families`) and its ``diag`` subcommands.
"""

from __future__ import annotations

import argparse
import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # the CLI imports this module to list the diag subcommands: it stays light
    from protocols.devices import DeviceList
    from protocols.metrics import Family
    from protocols.sync.standing import StandingData

    from .pipeline.drafts import EventDraft
    from .polling import FactSink
    from .settings import AgentConfig


class FamilyStartError(Exception):
    """A family cannot start (its message says what to fix); the agent does not start."""


class CommandAck(Protocol):
    """What a device's command returns: did the device acknowledge it, and if not, why."""

    @property
    def acked(self) -> bool: ...

    @property
    def detail(self) -> str: ...


class DeviceCoordinator(Protocol):
    """What the runtime and the command handler use of any device's coordinator."""

    device: str

    @property
    def link_up(self) -> bool: ...

    async def disable_machine(self) -> CommandAck: ...

    async def enable_machine(self) -> CommandAck: ...


class FamilyNormalizer(Protocol):
    """A family's facts → event drafts (pure, synchronous), with crash-safe checkpoints."""

    def feed(self, fact: Any) -> list[EventDraft]: ...

    def take_checkpoints(self) -> dict[str, bytes]: ...

    def restore(self, checkpoints: Mapping[str, bytes]) -> list[str]: ...


Job = tuple[str, Awaitable[Any]]
"""A named piece of work the runtime runs as an owned task (a meter snapshot a normalizer asked for)."""


class DeviceFamily(ABC):
    """One kind of device the agent polls (see the module docstring)."""

    name: ClassVar[str]
    """The devices.toml ``protocol`` of its devices and the ``protocol`` of its rows: ``sas``, ``modbus``."""
    noun: ClassVar[str]
    """What the start-up status calls its devices: ``machines``, ``terminals``."""
    log_key: ClassVar[str]
    """The key of their count in the ``agent_starting`` log line."""
    commands: ClassVar[frozenset[str]]
    """The command actions its devices take."""

    normalizer: FamilyNormalizer
    coordinators: Mapping[str, DeviceCoordinator]

    @classmethod
    @abstractmethod
    def create(cls, config: AgentConfig, devices: DeviceList, facts: FactSink) -> DeviceFamily:
        """The family's part of the hall: its devices of ``devices`` (possibly none), their
        coordinators writing into ``facts``, and its normalizer. Raises ValueError for a device
        it cannot poll (the agent then does not start)."""

    @abstractmethod
    async def start(self, *, tolerate_missing_ports: bool = False) -> None:
        """Open the transports and start polling; :class:`FamilyStartError` when it cannot."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop polling (no new facts after this returns) and close the transports."""

    @abstractmethod
    def command(self, device: str, action: str, game: str | None) -> Awaitable[CommandAck] | str:
        """Central's ``action`` on one of its devices: the call to await, or why it cannot be done."""

    @abstractmethod
    def device_states(self, locked: set[str], last_fact: Mapping[str, float]) -> list[dict[str, Any]]:
        """Its rows of the agent's state (``hall-agent devices``, ``/metrics``), in configuration order."""

    def tick(self, now: float) -> list[Job]:
        """Called every second: the work its normalizer asks for now (snapshots to read)."""
        return []

    def apply_standing(self, doc: StandingData) -> None:  # noqa: B027 (a hook: most families ignore it)
        """HQ's standing data arrived (the gaming day its reports use)."""

    def metric_families(self) -> Iterable[Family]:
        """Its own Prometheus families beyond the per-device ones every family has."""
        return ()


class FamilySink:
    """A family's facts into the pipeline's one bounded queue, each tagged with the family's name
    (so the pipeline hands it to that family's normalizer). Full queue: ``put`` waits (back-pressure),
    ``put_nowait`` raises ``asyncio.QueueFull``, as the queue itself does."""

    def __init__(self, queue: asyncio.Queue[tuple[str, Any]], family: str) -> None:
        self.queue = queue
        self.family = family

    async def put(self, item: Any) -> None:
        await self.queue.put((self.family, item))

    def put_nowait(self, item: Any) -> None:
        self.queue.put_nowait((self.family, item))


@dataclass(frozen=True)
class Diagnostic:
    """One ``hall-agent diag NAME`` subcommand a family brings: its parser, the defaults of its
    options (below the config file, the environment and the flags) and what runs it."""

    name: str
    add_parser: Callable[[Any], argparse.ArgumentParser]
    defaults: Mapping[str, Any]
    run: Callable[[dict[str, Any]], int]


__all__ = ["CommandAck", "DeviceCoordinator", "DeviceFamily", "Diagnostic", "FamilyNormalizer", "FamilySink",
           "FamilyStartError", "Job"]
