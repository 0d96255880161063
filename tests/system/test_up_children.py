"""`storymesh up` children never outlive it, even when it is SIGKILLed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from testkit.mesh import Spawner

from .test_story_processes import Up, alive, mesh_env, up_factory

__all__ = ["up_factory"]  # the fixture, used below by name

pytestmark = [pytest.mark.timeout(120)]


def test_a_sigkilled_up_leaves_no_idle_child_running(
        spawner: Spawner, endpoint: str, tmp_path: Path, up_factory: list[Up]) -> None:
    # Given `storymesh up` with its broker and four idle agents running
    up = Up(spawner, endpoint, env=mesh_env(tmp_path))
    up_factory.append(up)
    children = up.wait_ready(count=5)
    # When `up` is SIGKILLed (no handler of its own can run)
    os.kill(up.proc.pid, signal.SIGKILL)
    # Then within 2 s none of its children runs any more
    end = time.monotonic() + 2.0
    while time.monotonic() < end and any(alive(pid) for pid in children.values()):
        time.sleep(0.05)
    left = {name: pid for name, pid in children.items() if alive(pid)}
    assert not left, f"still running 2 s after up was SIGKILLed: {left}"
