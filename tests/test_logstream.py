"""Logging survives the stream it was configured under being replaced and closed (a command run
in-process under a captured stderr): a later log line goes to the stderr of that moment and never
raises into the caller (it killed central's ingest worker tasks in the two-process test run)."""

from __future__ import annotations

import io
import sys

import pytest
import structlog

import agent.logging_setup
import central.logging_setup


@pytest.mark.parametrize("setup", [central.logging_setup.setup_logging, agent.logging_setup.setup_logging])
def test_a_logger_first_used_under_a_closed_stream_writes_to_the_current_one(setup, monkeypatch) -> None:
    saved = structlog.get_config()
    log = structlog.get_logger("test-logstream")
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    try:
        setup("info", json=True)
        log.warning("first_line")    # cached on first use, under the temporary stream
    finally:
        monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert "first_line" in first.getvalue()
    first.close()
    now = sys.stderr
    log.warning("second_line")
    assert "second_line" in now.getvalue()
    structlog.configure(**saved)
