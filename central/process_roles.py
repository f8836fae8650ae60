"""What one ``hall-central serve`` process runs (issue 14), in a module light enough for the CLI's parser."""

from __future__ import annotations

from typing import Final

PROCESS_ROLES: Final = ("all", "ingest", "api", "monitor")
"""``ingest``: the shared subscription (batches, status, command results) and standing data on connect;
``api``: the HTTP API, whose MQTT link only publishes; ``monitor``: the alert monitor; ``all``: the three."""
