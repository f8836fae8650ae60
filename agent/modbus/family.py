"""The Modbus family (:class:`agent.family.DeviceFamily`): cash and betting terminals.

Its devices are the ``protocol = "modbus"`` records of devices.toml; :class:`~agent.modbus.poller.ModbusPoller`
builds one :class:`~agent.modbus.adapter.ModbusAdapter` and one
:class:`~agent.modbus.coordinator.TerminalCoordinator` per terminal; its normalizer is
:class:`~agent.modbus.terminal.TerminalNormalizer` (counter deltas → money events). A terminal takes
``disable_machine`` / ``enable_machine`` (control register 1 / 2), not the per-game commands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from protocols.devices import DeviceList

from ..family import CommandAck, DeviceFamily
from ..polling import FactSink
from .coordinator import TerminalCoordinator
from .poller import ModbusDevice, ModbusPoller, modbus_devices
from .terminal import TerminalNormalizer

if TYPE_CHECKING:
    from ..settings import AgentConfig


class ModbusFamily(DeviceFamily):
    """Modbus terminals: see the module docstring."""

    name = "modbus"
    noun = "terminals"
    log_key = "terminals"
    commands = frozenset({"disable_machine", "enable_machine"})

    def __init__(self, devices: list[ModbusDevice], poller: ModbusPoller, normalizer: TerminalNormalizer) -> None:
        self.devices = devices
        self.poller = poller
        self.normalizer: TerminalNormalizer = normalizer
        self.coordinators: dict[str, TerminalCoordinator] = poller.coordinators

    @classmethod
    def create(cls, config: AgentConfig, devices: DeviceList, facts: FactSink) -> ModbusFamily:
        terminals = modbus_devices(devices)
        return cls(terminals, ModbusPoller(terminals, config.modbus, facts=facts), TerminalNormalizer(config.currency))

    async def start(self, *, tolerate_missing_ports: bool = False) -> None:
        await self.poller.start()   # an unreachable terminal is retried with back-off, never fatal

    async def stop(self) -> None:
        await self.poller.stop()

    def command(self, device: str, action: str, game: str | None) -> Awaitable[CommandAck] | str:
        coord = self.coordinators[device]
        if action == "disable_machine":
            return coord.disable_machine()
        if action == "enable_machine":
            return coord.enable_machine()
        if action in ("disable_game", "enable_game"):
            return f"{action} needs a SAS machine; {device!r} is a terminal"
        return f"{action} is not a terminal command"

    def device_states(self, locked: set[str], last_fact: Mapping[str, float]) -> list[dict[str, Any]]:
        rows = []
        for term in self.devices:
            tc = self.coordinators[term.id]
            ep = term.endpoint
            rows.append({
                "id": term.id, "protocol": "modbus", "transport": ep.transport, "host": ep.host,
                "port": ep.port if ep.host is not None else None, "serial": ep.serial, "unit": ep.unit,
                "map": term.map, "link_up": tc.link_up, "stale": tc.stale,
                "locked_by_agent": term.id in locked,
                "last_seen": tc.last_seen_wall, "last_fact": last_fact.get(term.id),
                "last_error": tc.last_error, "polls": tc.polls, "errors": tc.errors, "missed_polls": tc.errors,
            })
        return rows


FAMILY = ModbusFamily

__all__ = ["FAMILY", "ModbusFamily"]
