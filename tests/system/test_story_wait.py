"""`storymesh story` waits up to `story_wait` for the broker and the story service."""

from __future__ import annotations

import re
import select
import subprocess
import sys
from typing import IO

import pytest

from testkit.mesh import REPO, Spawner

pytestmark = [pytest.mark.timeout(120)]


def story_args(endpoint: str, *extra: str) -> list[str]:
    return ["story", "--broker", endpoint, "--plot", "A lost kite", "--config", "/dev/null",
            *extra]


def test_story_without_a_broker_says_so_after_story_wait(spawner: Spawner,
                                                          endpoint: str) -> None:
    # Given no broker at the endpoint, and story_wait 2 s
    # When a story is asked of it (a long --timeout, as a user would give)
    run = spawner.cli(*story_args(endpoint, "--timeout", "3600"),
                      env={"STORYMESH_STORY_WAIT": "2"}, timeout=60)
    # Then it says once what it waits for, stops after story_wait (not after an hour) with
    # exit 2, and says what to do
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout.count(f"waiting for the broker at {endpoint}") == 1, run.stdout
    assert "no broker answers" in run.stdout
    assert "--local" in run.stdout.replace("\n", " ")


def _line(stream: IO[str], timeout: float) -> str:
    """The next line the command prints, waiting at most `timeout` seconds for it."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"nothing printed within {timeout} s"
    return stream.readline()


def test_story_started_before_the_mesh_waits_for_it(spawner: Spawner, endpoint: str) -> None:
    # Given `storymesh story --detach` started before any broker or story service
    argv = [sys.executable, "-m", "storymesh", *story_args(endpoint, "--detach")]
    story = subprocess.Popen(argv, cwd=REPO, env=spawner.env({"STORYMESH_STORY_WAIT": "60"}),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert story.stdout is not None
    try:
        # When it says it waits for the broker, the broker comes up; when it then says it
        # waits for the story service, the story service comes up
        said = [_line(story.stdout, 30.0)]
        spawner.broker(endpoint)
        said.append(_line(story.stdout, 30.0))
        spawner.spawn("story", "agent", "story", "--broker", endpoint, "--log-level",
                      "warning", "--config", "/dev/null",
                      env={"STORYMESH_JOURNAL": str(spawner.logs / "journal.db")})
        out, _ = story.communicate(timeout=60)
    finally:
        if story.poll() is None:
            story.kill()
            story.wait()
    out = "".join(said) + out
    # Then the story is accepted (its id printed, exit 0), after saying once what it
    # waited for
    assert story.returncode == 0, out
    assert said[0].startswith(f"waiting for the broker at {endpoint}"), out
    assert said[1].startswith(f"waiting for the story service at {endpoint}"), out
    assert out.count("waiting for the broker") == 1, out
    assert out.count("waiting for the story service") == 1, out
    assert re.fullmatch(r"[\w-]+", out.strip().splitlines()[-1]), out
