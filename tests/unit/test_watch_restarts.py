"""Kopf has no hook for a reopened watch stream, only debug lines; the counter reads those.
These tests take the lines from Kopf's own source, so an upgrade that rewords them fails here
instead of silently stopping the count."""

from __future__ import annotations

import inspect
import logging
import re

import kopf._cogs.clients.watching as watching

from servicegraph.telemetry import METRICS, WATCH_LOGGER, WatchRestartCounter


def kopf_lines() -> list[str]:
    """Kopf's f-strings of a restarted stream, filled in as Kopf fills them."""
    source = inspect.getsource(watching)
    templates = re.findall(r'logger\.debug\(f"((?:Restarting|Watch-stream)[^"]*)"\)', source)
    assert len(templates) == 2, templates  # after 410 Gone, and after silence
    return [
        template.replace("{resource}", "servicedependencies.v1alpha1.graph.slo-engine.io").replace(
            "{where}", "in 'shop'"
        )
        for template in templates
    ]


def test_each_of_kopfs_restart_lines_is_counted() -> None:
    counter = WatchRestartCounter()
    restarts = METRICS.watch_restarts.labels("servicedependencies.v1alpha1.graph.slo-engine.io")
    for line in kopf_lines():
        before = restarts._value.get()
        record = logging.LogRecord(WATCH_LOGGER, logging.DEBUG, __file__, 1, line, None, None)
        assert counter.filter(record) is False  # counted, then dropped: debug is off
        assert restarts._value.get() == before + 1, line


def test_the_counter_reads_the_logger_kopf_uses() -> None:
    assert watching.logger.name == WATCH_LOGGER
