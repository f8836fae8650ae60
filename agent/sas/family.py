"""The SAS family (:class:`agent.family.DeviceFamily`): slot machines on serial lines.

Its devices are the ``protocol = "sas"`` records of devices.toml; :class:`~agent.sas.poller.SasPoller`
opens one :class:`~agent.sas.line.SasLine` per port and one
:class:`~agent.sas.coordinator.MachineCoordinator` per address; its normalizer is
:class:`agent.sas.normalizer.Normalizer` (exceptions, meters and identity → game, money, device and service
events, reconciled against the meters), which also asks for meter snapshots (the gaming-day close,
the settled window of an idle machine) through :meth:`SasFamily.tick`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from protocols.devices import DeviceList
from protocols.metrics import Family
from protocols.sync.commands import DEVICE_ACTIONS, GAME_ACTIONS
from protocols.sync.standing import StandingData

from ..family import CommandAck, DeviceFamily, FamilyStartError, Job
from ..polling import FactSink
from ..transport.errors import TransportError
from .coordinator import MachineCoordinator
from .metrics import sas_metric_families
from .normalizer import Normalizer
from .poller import SasDevice, SasPoller, sas_devices

if TYPE_CHECKING:
    from ..settings import AgentConfig

log = structlog.get_logger("agent.runtime")


def _game_number(game: str | None) -> int | None:
    """A command's game as the EGM's game number (1..65535, written plainly), else None."""
    text = game or ""
    if text.isascii() and text.isdigit() and 1 <= int(text) <= 0xFFFF and text == str(int(text)):
        return int(text)
    return None


class SasFamily(DeviceFamily):
    """SAS machines: see the module docstring."""

    name = "sas"
    noun = "machines"
    log_key = "devices"
    commands = DEVICE_ACTIONS   # machine and game enable/disable (LP 01/02, LP 09)

    def __init__(self, devices: list[SasDevice], poller: SasPoller, normalizer: Normalizer) -> None:
        self.devices = devices
        self.poller = poller
        self.normalizer: Normalizer = normalizer
        self.coordinators: dict[str, MachineCoordinator] = poller.coordinators

    @classmethod
    def create(cls, config: AgentConfig, devices: DeviceList, facts: FactSink) -> SasFamily:
        machines = sas_devices(devices)
        normalizer = Normalizer(config.currency, gaming_day_start=config.gaming_day_start,
                                settle_seconds=config.meter_settle_seconds)
        return cls(machines, SasPoller(machines, config.poll, facts=facts), normalizer)

    async def start(self, *, tolerate_missing_ports: bool = False) -> None:
        try:  # a missing adapter leaves its machines offline (retried), never the whole hall
            await self.poller.start(tolerate_missing_ports=tolerate_missing_ports)
        except TransportError as exc:
            raise FamilyStartError(f"serial line: {exc}") from exc

    async def stop(self) -> None:
        await self.poller.stop()

    def command(self, device: str, action: str, game: str | None) -> Awaitable[CommandAck] | str:
        coord = self.coordinators[device]
        if action in GAME_ACTIONS:
            number = _game_number(game)
            if number is None:
                return f"unknown game {game or ''!r}"
            return coord.disable_game(number) if action == "disable_game" else coord.enable_game(number)
        if action == "disable_machine":
            return coord.disable_machine()
        if action == "enable_machine":
            return coord.enable_machine()
        return f"{action} is not a SAS command"

    def tick(self, now: float) -> list[Job]:
        """Gaming-day close and settled windows of idle machines: the normalizer asks for meter
        snapshots, the coordinators read them."""
        jobs: list[Job] = []
        for request in self.normalizer.tick(now):
            coord = self.coordinators.get(request.device)
            if coord is not None:
                jobs.append((f"{request.reason}:{request.device}", _snapshot(coord, request.reason)))
        return jobs

    def apply_standing(self, doc: StandingData) -> None:
        """HQ's standing data: the gaming day its reports use becomes the day this agent closes."""
        self.normalizer.day_rule = doc.day_rule

    def device_states(self, locked: set[str], last_fact: Mapping[str, float]) -> list[dict[str, Any]]:
        rows = []
        for dev in self.devices:
            coord = self.coordinators[dev.id]
            ident = coord.identity
            stats = coord.stats
            rows.append({
                "id": dev.id, "protocol": "sas", "port": dev.port, "address": dev.address,
                "link_up": coord.link_up, "rte": coord.rte_active, "fast_polling": coord.fast_polling,
                "locked_by_agent": dev.id in locked,
                "game_id": ident.game_id if ident else None, "serial": ident.serial if ident else None,
                "last_seen": coord.last_seen_wall, "last_fact": last_fact.get(dev.id),
                "last_error": coord.last_error, "polls": stats.transmissions, "answered": stats.answered,
                "missed_polls": stats.missed_polls, "retries": stats.retries,
            })
        return rows

    def metric_families(self) -> Iterable[Family]:
        return sas_metric_families(self.poller)


async def _snapshot(coord: MachineCoordinator, reason: str) -> None:
    """One asked-for snapshot; a machine that cannot be read now is asked again later."""
    try:
        await coord.read_meters(reason)
    except Exception as exc:
        log.info("snapshot_not_read", device=coord.device, reason=reason, error=str(exc) or type(exc).__name__)


FAMILY = SasFamily

__all__ = ["FAMILY", "SasFamily"]
