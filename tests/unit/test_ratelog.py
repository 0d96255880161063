"""Peer-triggered log lines are rate-limited: a burst per window, then one summary line."""

from __future__ import annotations

import logging

import pytest

from storymesh.plumbing.ratelog import RateLog


def test_a_flood_logs_a_burst_then_one_summary_per_window(caplog: pytest.LogCaptureFixture) -> None:
    # Given a limiter of 3 lines per 10 s
    limiter = RateLog(logging.getLogger("test.ratelog"), burst=3, window=10.0)
    caplog.set_level(logging.WARNING, logger="test.ratelog")
    # When 100 events arrive within one window
    for i in range(100):
        limiter.log(1.0 + i * 0.01, "bad peer %d", i)
    # Then only the first 3 are logged and the rest are counted
    assert [r.getMessage() for r in caplog.records] == ["bad peer 0", "bad peer 1", "bad peer 2"]
    assert limiter.suppressed == 97
    # When the window rolls over, one line sums up what was left out, and logging resumes
    limiter.log(12.0, "bad peer %d", 100)
    assert [r.getMessage() for r in caplog.records][-2:] == [
        "97 more like this in the last 10 s were not logged", "bad peer 100"]
    assert limiter.suppressed == 0
