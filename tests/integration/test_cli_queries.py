"""The story query commands and `storymesh health` as a script uses them: a real broker on
loopback tcp with the sleep-based story agents and the real story service in threads
(`testkit.mesh.Mesh`), and `python -m storymesh ...` run as a process against it.

`--json` prints on stdout exactly what `storymesh.ops.stories` and `storymesh.ops.health`
build (what the HTTP gateway serves too); errors go to stderr with the usual exit codes; the
tables of the plain commands still show the same stories.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storymesh.core import schema
from storymesh.ops.health import STORY_SERVICES, read_health
from storymesh.ops.stories import stories_json, story_history_json, story_status_json
from storymesh.story.api import StoryClient
from storymesh.story.service import run_story_service
from testkit.mesh import Mesh, Spawner, free_endpoint
from testkit.sleepy import Costs, SleepyAuthor, SleepyIllustrator, SleepyPublisher

pytestmark = pytest.mark.timeout(120)

COSTS = Costs(outline=0.01, chapter=0.01, picture=0.01, publish=0.01)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """A tcp broker, the sleepy author, illustrator and publisher, and the story service."""
    journal = tmp_path_factory.mktemp("journal") / "journal.db"
    with Mesh() as mesh:
        for agent in (SleepyAuthor(COSTS), SleepyIllustrator(COSTS), SleepyPublisher(COSTS)):
            mesh.add_agent(agent)
        story = mesh.peer_settings(journal=str(journal)).story_section()
        mesh.serve(run_story_service, story, mesh.stop, context=mesh.context)
        mesh.wait_services(*STORY_SERVICES)
        yield mesh


def stories(mesh: Mesh) -> StoryClient:
    return StoryClient(mesh.endpoint, settings=mesh.settings.peer_section(), context=mesh.context,
                       timeout=10.0)


@pytest.fixture(scope="module")
def corr(mesh: Mesh) -> str:
    """A finished two-chapter story."""
    with stories(mesh) as client:
        corr = client.submit("A mouse finds the moon", chapters=2, seed=3)
        assert client.wait(corr)["status"] == "complete"
    return corr


@pytest.fixture
def cli(mesh: Mesh, tmp_path: Path) -> Iterator[Any]:
    """`cli("list", "--json")`: the command against the mesh's broker, output captured."""
    spawner = Spawner(tmp_path)

    def run(*args: str, broker: str | None = None) -> Any:
        return spawner.cli(*args, "--broker", broker or mesh.endpoint, "--config", "/dev/null")
    yield run
    spawner.close()


# --- --json ----------------------------------------------------------------------------


def test_list_json_is_the_stories_answer(mesh: Mesh, corr: str, cli: Any) -> None:
    # Given a finished story / When a script lists the stories as JSON
    result = cli("list", "--json")
    # Then stdout is one JSON document: the stories, with the table's keys
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    (row,) = [s for s in listed["stories"] if s["corr"] == corr]
    assert {"corr", "status", "title", "updated", "plot"} <= set(row)
    assert row["status"] == "complete"
    # And it is what the gateway's function builds
    with stories(mesh) as client:
        assert listed == json.loads(json.dumps(stories_json(client)))


def test_status_json_has_the_status_query_keys(mesh: Mesh, corr: str, cli: Any) -> None:
    result = cli("status", corr, "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    with stories(mesh) as client:
        expected = story_status_json(client, corr)
    assert set(answer) == set(expected) >= {"corr", "status", "title", "steps", "error"}
    assert answer["status"] == "complete"
    assert answer["steps"]["chapters_written"] == 2


def test_history_json_lists_every_message(mesh: Mesh, corr: str, cli: Any) -> None:
    result = cli("history", corr, "--json")
    assert result.returncode == 0, result.stderr
    history = json.loads(result.stdout)["history"]
    assert all({"sender", "receiver", "message_type", "time"} <= set(h) for h in history)
    replies = {(h["sender"], h["message_type"]) for h in history if h["receiver"] == "story"}
    assert {("author", "outline"), ("author", "chapter"),
            ("publisher", "publications")} <= replies
    with stories(mesh) as client:
        assert len(history) == len(story_history_json(client, corr)["history"])


def test_an_unknown_story_is_an_error_on_stderr_with_its_exit_code(mesh: Mesh,
                                                                   cli: Any) -> None:
    # When a script asks for a story that does not exist
    result = cli("status", "no-such-story", "--json")
    # Then stdout stays empty, stderr says why, the exit code is not_found's
    assert result.returncode == schema.exit_code_for("not_found"), result.stderr
    assert result.stdout == ""
    assert "not_found" in result.stderr


# --- the plain commands, after the refactor ------------------------------------------------


def test_list_status_and_history_tables_show_the_story(corr: str, cli: Any) -> None:
    listed, status, history = (cli("list"), cli("status", corr), cli("history", corr))
    assert [r.returncode for r in (listed, status, history)] == [0, 0, 0], listed.stderr
    # (an 80-column table folds the id inside its cell)
    assert corr[:12] in listed.stdout
    assert "complete" in listed.stdout
    assert corr in status.stdout
    assert "chapters 2/2" in status.stdout
    assert "author" in history.stdout
    assert "->" in history.stdout


def test_fetch_writes_the_book_and_cancel_of_a_finished_story_changes_nothing(
        corr: str, cli: Any, tmp_path: Path) -> None:
    fetched = cli("fetch", corr, "--out", str(tmp_path / "book"))
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert {p.suffix for p in (tmp_path / "book").iterdir()} == {".pdf", ".html", ".epub"}
    cancelled = cli("cancel", corr)
    assert cancelled.returncode == 0, cancelled.stdout
    assert cancelled.stdout.strip() == f"{corr}: complete"


def test_a_query_without_a_broker_exits_down(cli: Any) -> None:
    result = cli("list", "--json", broker=free_endpoint())
    assert result.returncode == schema.EXIT_DOWN
    assert result.stdout == ""


# --- health --json -------------------------------------------------------------------------


def test_health_json_healthy_degraded_and_down(mesh: Mesh, cli: Any) -> None:
    # Given the mesh with every story service served
    # When a script asks for the story services' health
    named = [arg for name in STORY_SERVICES for arg in ("--service", name)]
    healthy = cli("health", "--json", *named)
    # Then it is healthy, with each service's worker counts
    assert healthy.returncode == schema.EXIT_OK, healthy.stderr
    report = json.loads(healthy.stdout)
    assert report["status"] == "healthy"
    assert set(report["services"]) == set(STORY_SERVICES)
    assert all(set(s) == {"workers", "idle", "busy", "queue"} and s["workers"] >= 1
               for s in report["services"].values())
    # When it names a service nobody serves: degraded, exit 1, that service has 0 workers
    degraded = cli("health", "--json", "--service", "story.query", "--service", "nobody")
    assert degraded.returncode == schema.EXIT_DEGRADED, degraded.stderr
    report = json.loads(degraded.stdout)
    assert report["status"] == "degraded"
    assert report["services"]["nobody"]["workers"] == 0
    assert report["services"]["story.query"]["workers"] >= 1
    # When no broker answers: down, exit 2
    down = cli("health", "--json", "--timeout", "0.5", broker=free_endpoint())
    assert down.returncode == schema.EXIT_DOWN
    assert json.loads(down.stdout) == {"status": "down", "services": {}}


def test_read_health_without_names_reports_every_service(mesh: Mesh) -> None:
    # Given the mesh / When health is read with no service named
    report = read_health(mesh.settings, [], timeout=5.0)
    # Then the broker answering is healthy, and every registered service is listed
    assert report.status == "healthy"
    assert report.exit_code == schema.EXIT_OK
    assert set(STORY_SERVICES) <= set(report.services)

