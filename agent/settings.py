"""The configuration of ``hall-agent run``: what :class:`agent.runtime.HallAgent` and its device
families (:mod:`agent.family`) are built from."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mqttlink import BrokerUrl
from protocols.sync import MAX_CLOCK_SKEW_SECONDS, MAX_COMMAND_LIFETIME_SECONDS

from .modbus.coordinator import ModbusPollConfig
from .replicator import ReplicatorConfig
from .sas.config import PollConfig


@dataclass(frozen=True)
class AgentConfig:
    hall: str
    data_dir: Path
    devices: Path
    mqtt: str | BrokerUrl
    """The broker: a URL, or one already parsed with its password added (mqttlink.broker_url, the CLI)."""
    central_key: Path
    currency: str = "EUR"
    gaming_day_start: dt.time = dt.time(6, 0)
    state_interval: float = 2.0
    prune_interval: float = 3600.0
    """Seconds between outbox prunes; the first runs :data:`PRUNE_FIRST_DELAY` after start."""
    retention_days: float = 7.0
    """Acked events older than this are pruned (unacked ones never are)."""
    retention_max_mb: float = 1024.0
    """And while the outbox's pages in use exceed this many MB (10^6 bytes), the oldest acked events
    go even if younger: whichever keeps less. 0 or less: no size cap."""
    meter_settle_seconds: float = 30.0
    poll: PollConfig = field(default_factory=PollConfig)
    modbus: ModbusPollConfig = field(default_factory=ModbusPollConfig)
    replicator: ReplicatorConfig = field(default_factory=ReplicatorConfig)
    command_max_skew: float = MAX_CLOCK_SKEW_SECONDS
    """Seconds a command's ``issued_at`` may lie in this agent's future; beyond: ``rejected``."""
    command_max_lifetime: float = MAX_COMMAND_LIFETIME_SECONDS
    """Longest ``expires_at - issued_at`` (seconds) of a command this agent applies; longer: ``rejected``."""
    metrics: str | None = None
    """``HOST:PORT`` to serve Prometheus ``/metrics`` on (port 0: any free port); None: no listener."""
    family_options: Mapping[str, Any] = field(default_factory=dict)
    """Options of a device family that has no field of its own here (``poll`` is the SAS family's,
    ``modbus`` the Modbus family's), by family name (:attr:`agent.family.DeviceFamily.name`)."""


__all__ = ["AgentConfig"]
