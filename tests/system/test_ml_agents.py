"""The real transformers and diffusers code paths as daemons behind a real broker.

Tiny random models are built offline (testkit/tiny_models.py), saved to a
temporary folder and loaded by spawned `storymesh agent author|illustrator` processes
through exactly the code a user's model goes through.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storymesh.errors import RequestFailed
from testkit.mesh import Spawner
from tests.system.conftest import client

pytestmark = [pytest.mark.system, pytest.mark.ml]

MODEL_START = 90.0  # importing torch and loading a model in a cold process, on 2 busy cores
COMMON = ("--heartbeat-interval", "0.2", "--liveness", "10", "--log-level", "info",
          "--config", "/dev/null")


def test_model_agents_serve_a_chapter_and_a_picture_as_daemons(
        spawner: Spawner, endpoint: str, tiny_lm: Path, tiny_sd: Path) -> None:
    # Given a broker, a transformers author and a diffusers illustrator, each its own process
    spawner.broker(endpoint)
    author = spawner.spawn("author", "agent", "author", "--broker", endpoint, "--backend",
                           "transformers", "--model", str(tiny_lm), *COMMON)
    painter = spawner.spawn("illustrator", "agent", "illustrator", "--broker", endpoint,
                            "--backend", "diffusers", "--model", str(tiny_sd), *COMMON)
    snap = spawner.workers(endpoint, "story.author", [author.pid], timeout=MODEL_START)
    spawner.workers(endpoint, "story.illustrator", [painter.pid], timeout=MODEL_START)
    # Then each announced what it loaded, for the monitor
    meta = next(w["meta"] for w in snap["workers"] if w["service"] == "story.author")
    assert meta["backend"] == "transformers"
    assert meta["model"] == str(tiny_lm)
    with client(endpoint, timeout=60.0) as c:
        # When the author writes an outline and a chapter from the random model
        outline = c.call("story.author", {"op": "outline", "plot": "A fox finds a lantern",
                                          "chapters": 2, "seed": 7}).payload
        chapter = c.call("story.author", {"op": "chapter", "outline": outline, "index": 0,
                                          "seed": 7}).payload
        # Then the book's structure is whole even though the prose is noise
        assert outline["title"]
        assert len(outline["chapters"]) == 2
        assert chapter["text"].strip()
        assert chapter["picture_prompt"].strip()
        # When the illustrator paints that chapter's picture
        picture = c.call("story.illustrator", {"prompt": chapter["picture_prompt"],
                                               "characters": outline["characters"],
                                               "width": 64, "height": 64, "steps": 2,
                                               "seed": 3}).payload
        # Then it is a PNG of the size asked for, from the diffusers backend
        assert picture["png"].startswith(b"\x89PNG")
        assert picture["backend"] == "diffusers"
        assert (picture["width"], picture["height"]) == (64, 64)
        # When a request is nonsense (an 8000x8000 picture), it gets a clear error
        with pytest.raises(RequestFailed) as refused:
            c.call("story.illustrator", {"prompt": "a fox", "width": 8000, "height": 8000})
        assert refused.value.code in ("bad_request", "too_large")
        assert "8000" in refused.value.message or "width" in refused.value.message
        # Then the agent keeps serving
        again = c.call("story.illustrator", {"prompt": "a fox at night", "width": 64,
                                             "height": 64, "steps": 2, "seed": 4}).payload
        assert again["png"].startswith(b"\x89PNG")
    assert author.alive()
    assert painter.alive()


def test_a_missing_model_folder_stops_the_agent_at_start_with_one_clear_line(
        spawner: Spawner, endpoint: str, tmp_path: Path) -> None:
    # Given a model folder that does not exist
    missing = tmp_path / "no-such-model"
    # When an author daemon is started on it
    proc = spawner.spawn("author", "agent", "author", "--broker", endpoint, "--backend",
                         "transformers", "--model", str(missing), *COMMON)
    # Then it exits non-zero at start, naming the folder, before serving anything
    assert proc.wait(MODEL_START) != 0
    assert str(missing) in proc.log.read_text()
