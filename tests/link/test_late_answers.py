"""aiomqtt's log of a broker answer to a call we abandoned (SIGTERM while subscribing) is not an error
with a traceback among central's JSON lines (issue 16, found by the h-diag helper): one debug line."""

from __future__ import annotations

import logging

from mqttlink.link import _AIOMQTT_LOG


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_late_suback_is_not_logged_as_an_exception_and_other_lines_still_are() -> None:
    collect = Collect()
    _AIOMQTT_LOG.addHandler(collect)
    try:
        try:
            {}.pop(2)
        except KeyError:
            _AIOMQTT_LOG.exception('Unexpected message ID "%d" in on_subscribe callback', 2)
        _AIOMQTT_LOG.warning("Message queue is full. Discarding message.")
    finally:
        _AIOMQTT_LOG.removeHandler(collect)
    assert [r.getMessage() for r in collect.records] == ["Message queue is full. Discarding message."]
