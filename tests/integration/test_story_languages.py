"""A story's language, checked at submission against what the mesh's authors write.

Over a real broker: the story service (`LocalMesh`, the real embedded agents) refuses a
French story at once with `bad_request` naming the transformers backend, takes English in
any region, and refuses a malformed tag; with authors that cannot say what they write
(`SleepyMesh`: they do not know op `languages`) it accepts. `ask_languages` against a broker
with no author, an embedded author and a transformers author on the tiny random model; the
answer kept for its TTL on a fake clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storymesh.agents.author import AuthorAgent
from storymesh.errors import RequestFailed
from storymesh.story.api import StoryClient
from storymesh.story.authors import AuthorLanguages, Languages, ask_languages
from storymesh.story.local import LocalMesh
from testkit.clock import FakeClock
from testkit.mesh import Mesh, fast_settings
from testkit.sleepy import Costs, SleepyAuthor, SleepyMesh

pytestmark = pytest.mark.timeout(90)

PLOT = "Two otters build a raft to cross a flooded river"


def stories_of(mesh: LocalMesh) -> StoryClient:
    return StoryClient(mesh.endpoint, settings=mesh.settings.peer_section(), context=mesh.context,
                       timeout=30.0)


@pytest.fixture(scope="module")
def embedded_mesh() -> Iterator[LocalMesh]:
    with LocalMesh(fast_settings(picture_size=64, step_timeout=60.0)) as mesh:
        yield mesh


def test_the_embedded_storyteller_mesh_refuses_french_at_submission(
        embedded_mesh: LocalMesh) -> None:
    with stories_of(embedded_mesh) as stories:
        before = len(stories.list(50))
        # When a French story is submitted to a mesh whose author is the embedded storyteller
        with pytest.raises(RequestFailed) as refused:
            stories.submit(PLOT, chapters=1, language="fr")
        # Then it is refused at once, naming the backend that writes French
        assert refused.value.code == "bad_request"
        assert "'fr'" in refused.value.message
        assert "transformers" in refused.value.message
        # and no story was journalled for it
        assert len(stories.list(50)) == before
        # When it is English of a region, it is accepted and runs to the end
        corr = stories.submit(PLOT, chapters=1, language="en-GB", formats=["html"], seed=1)
        assert stories.wait(corr)["status"] == "complete"


@pytest.mark.parametrize("language", ["english", "fr_FR", 12])
def test_a_malformed_language_is_refused(embedded_mesh: LocalMesh, language: object) -> None:
    with stories_of(embedded_mesh) as stories:
        with pytest.raises(RequestFailed) as refused:
            stories.submit_request({"plot": PLOT, "language": language})
        assert refused.value.code == "bad_request"
        assert "'language'" in refused.value.message


def test_authors_that_cannot_say_what_they_write_are_trusted(tmp_path: Path) -> None:
    # Given a mesh whose authors do not know op `languages` (as an older author would not)
    with (SleepyMesh(fast_settings(step_timeout=30.0), Costs(0.0, 0.0, 0.0, 0.0),
                     journal=tmp_path / "journal.db") as mesh,
          StoryClient(mesh.endpoint, settings=mesh.settings.peer_section(),
                      context=mesh.context, timeout=30.0) as stories):
        # When a Greek story is submitted, Then it is accepted and runs
        corr = stories.submit(PLOT, chapters=1, language="el", formats=["html"])
        assert stories.wait(corr)["status"] == "complete"


# --- asking the authors over a real broker --------------------------------------------------


def test_ask_languages_with_no_author_an_embedded_one_and_an_old_one() -> None:
    with Mesh() as mesh:
        with mesh.client(timeout=1.0) as client:
            # No author registered yet: nothing is known, so the submission is accepted
            assert ask_languages(client) is None
            # An embedded author says English
            stop = mesh.add_agent(AuthorAgent())
            assert ask_languages(client) == Languages("embedded", ("en",))
            stop.set()
        # An author that does not know the op: nothing is known
        with Mesh() as old, old.client(timeout=1.0) as client:
            old.add_agent(SleepyAuthor(Costs()))
            assert ask_languages(client) is None


@pytest.mark.ml
def test_a_transformers_author_writes_any_language(tiny_lm: Path) -> None:
    agent = AuthorAgent(backend="transformers", model=str(tiny_lm), max_new_tokens=8)
    with Mesh() as mesh:
        mesh.add_agent(agent)
        with mesh.client(timeout=5.0) as client:
            answer = ask_languages(client)
    assert answer == Languages("transformers", ("*",))
    assert answer.writes("uk")
    assert answer.writes("pt-BR")


# --- the check (pure, fake clock) -----------------------------------------------------------


def test_a_definite_answer_is_kept_for_its_ttl_and_english_is_never_asked() -> None:
    clock, asked = FakeClock(100.0), []

    def ask() -> Languages | None:
        asked.append(clock.now)
        return Languages("embedded", ("en",))

    check = AuthorLanguages(ask, ttl=30.0, clock=clock)
    check.check("en")
    check.check("EN-us")
    assert asked == []
    for _ in range(3):
        with pytest.raises(Exception, match="transformers"):
            check.check("fr")
    assert asked == [100.0]
    clock.now += 31.0
    with pytest.raises(Exception, match="transformers"):
        check.check("de")
    assert asked == [100.0, 131.0]


def test_no_answer_accepts_and_asks_again_next_time() -> None:
    asked: list[int] = []

    def ask() -> Languages | None:
        asked.append(1)
        return None

    check = AuthorLanguages(ask, clock=FakeClock(100.0))
    check.check("fr")
    check.check("fr")
    assert len(asked) == 2


def test_storymesh_story_language_flag_reaches_the_story_service(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from storymesh.cli.app import app

    # When `storymesh story --local --language fr` runs on the embedded storyteller
    result = CliRunner().invoke(app, ["story", "--local", "--plot", PLOT, "--language", "fr",
                                      "--out", str(tmp_path), "--config", "/dev/null"])
    # Then it is refused, and the message (brackets and all) names what to run instead
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    assert "refused bad_request: language 'fr'" in text
    assert "transformers" in text
    assert "[author] table" in text
