"""The story service in one process: a real broker, the real agents (embedded backends) or
the sleep-based ones (`testkit.sleepy`), and the story service, in threads on
`inproc://`, each mesh with its own temporary journal.

What a user of `storymesh story` relies on: a book in three formats, a history of every
step, the query ops, clear errors for nonsense requests (and a service that keeps serving),
pictures painted side by side and while later chapters are written (read from the journal's
step timestamps), and the seed's Python functions.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

import pypdf
import pytest

from storymesh.errors import RequestFailed
from storymesh.settings import Settings
from storymesh.story import api
from storymesh.story.api import StoryClient
from storymesh.story.journal import StepKind, StepRow, open_journal
from storymesh.story.local import LocalMesh
from testkit.mesh import fast_settings
from testkit.sleepy import Costs, SleepyMesh

pytestmark = pytest.mark.timeout(90)

CHAPTERS = 3
PICTURE_SIDE = 128  # the embedded illustrator is quicker at a small size


def mesh_settings(**flags: object) -> Settings:
    return fast_settings(picture_size=PICTURE_SIDE, step_timeout=60.0, **flags)


def stories_of(mesh: LocalMesh | SleepyMesh) -> StoryClient:
    return StoryClient(mesh.endpoint, settings=mesh.settings.peer_section(), context=mesh.context,
                       timeout=30.0)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    """The real agents (embedded author, illustrator, reportlab publisher), one journal."""
    journal = tmp_path_factory.mktemp("journal") / "journal.db"
    with LocalMesh(mesh_settings(), journal=journal) as local:
        yield local


@pytest.fixture(scope="module")
def book(mesh: LocalMesh) -> dict[str, Any]:
    """A finished three-chapter story: its id and the watcher's outcome."""
    with stories_of(mesh) as stories:
        corr = stories.submit("A brave mouse goes on an adventure to find the lost moon",
                              themes=["courage"], chapters=CHAPTERS, seed=7,
                              formats=["pdf", "html", "epub"])
        events: list[dict[str, Any]] = []
        outcome = stories.wait(corr, on_event=events.append)
    return {"corr": corr, "outcome": outcome, "events": events}


# --- a finished book ------------------------------------------------------------------------

def test_a_story_completes_with_pdf_html_and_epub(book: dict[str, Any]) -> None:
    # Given a finished three-chapter story (the `book` fixture)
    outcome = book["outcome"]
    # Then the watcher's outcome says complete and carries all three formats
    assert outcome["status"] == "complete", outcome
    pubs = outcome["publications"]
    assert set(pubs) == {"pdf", "html", "epub"}
    # And the PDF opens: a cover, then one page or more per chapter, every picture embedded
    pdf = pypdf.PdfReader(io.BytesIO(pubs["pdf"]))
    assert len(pdf.pages) >= 1 + CHAPTERS
    images = sum(len(page.images) for page in pdf.pages)
    assert images >= 1 + CHAPTERS  # the cover and one per chapter
    text = "\n".join(page.extract_text() or "" for page in pdf.pages)
    assert outcome["title"].split()[0] in text
    # And the HTML inlines the pictures, and the EPUB is a zip holding them
    assert pubs["html"].count(b"<img") >= 1 + CHAPTERS
    with zipfile.ZipFile(io.BytesIO(pubs["epub"])) as epub:
        pictures = [n for n in epub.namelist() if n.lower().endswith((".png", ".jpg", ".jpeg"))]
        assert len(pictures) >= 1 + CHAPTERS
    # And the watcher saw progress: the outline, every chapter and every picture
    kinds = [e["event"] for e in book["events"]]
    assert kinds.count("chapter") == CHAPTERS
    assert kinds.count("picture") == CHAPTERS + 1
    assert "outline" in kinds
    assert "publishing" in kinds


def test_history_lists_the_author_illustrator_and_publisher_steps(
        mesh: LocalMesh, book: dict[str, Any]) -> None:
    # Given a finished story
    # When its history is asked for
    with stories_of(mesh) as stories:
        history = stories.history(book["corr"])
    # Then every message has sender, receiver, type, time and id, in time order
    assert all({"sender", "receiver", "message_type", "time", "id"} <= set(h) for h in history)
    times = [h["time"] for h in history]
    assert times == sorted(times)
    replies = [(h["sender"], h["message_type"]) for h in history if h["receiver"] == "story"]
    # And each agent's replies are there: the outline, each chapter, each picture, the book
    assert replies.count(("author", "outline")) == 1
    assert replies.count(("author", "chapter")) == CHAPTERS
    assert replies.count(("illustrator", "picture")) == CHAPTERS
    assert replies.count(("illustrator", "cover")) == 1
    assert replies.count(("publisher", "publications")) == 1
    asked = {h["receiver"] for h in history if h["sender"] == "story"}
    assert {"author", "illustrator", "publisher"} <= asked


def test_status_list_and_fetch_report_the_finished_story(
        mesh: LocalMesh, book: dict[str, Any]) -> None:
    # Given a finished story
    corr = book["corr"]
    with stories_of(mesh) as stories:
        # When its status, the story list and its publications are asked for
        status = stories.status(corr)
        listed = stories.list(10)
        fetched = stories.fetch(corr)
        # And cancelling it changes nothing (finished is final)
        cancelled = stories.cancel(corr)
    # Then all agree with what the watcher got
    assert status["status"] == "complete"
    assert status["title"] == book["outcome"]["title"]
    steps = status["steps"]
    assert steps["chapters_written"] == CHAPTERS
    assert steps["pictures_painted"] == CHAPTERS + 1
    assert steps["done"] == steps["total"]
    assert any(s["corr"] == corr and s["status"] == "complete" for s in listed)
    assert fetched == book["outcome"]["publications"]
    assert cancelled["status"] == "complete"


# --- bad requests -----------------------------------------------------------------------------

GOOD = {"plot": "A mouse finds a key", "chapters": 1}


@pytest.mark.parametrize(("request_", "codes", "words"), [
    ({"themes": ["courage"]}, {"bad_request"}, "plot"),
    ({"plot": "x" * 10_000_000}, {"too_large", "bad_request"}, ""),
    ({**GOOD, "art_style": "cubist_nightmare"}, {"bad_request"}, "art_style"),
    ({**GOOD, "chapters": -3}, {"bad_request"}, "chapters"),
    ({**GOOD, "chapters": 10_000}, {"bad_request"}, "chapters"),
], ids=["no-plot", "10MB-plot", "unknown-style", "chapters--3", "chapters-10000"])
def test_a_bad_submission_is_refused_clearly(mesh: LocalMesh, request_: dict[str, Any],
                                            codes: set[str], words: str) -> None:
    # Given the story service
    with stories_of(mesh) as stories:
        # When a nonsense story is submitted
        with pytest.raises(RequestFailed) as refused:
            stories.submit_request(request_)
        # Then it is refused at once with a code and a message naming the field
        assert refused.value.code in codes
        assert words in refused.value.message
        # And the service goes on serving: a query still gets its answer
        assert isinstance(stories.list(5), list)


def test_a_plot_over_any_limit_is_too_large_however_large(mesh: LocalMesh) -> None:
    # Given the story service, which calls a 5,000-character plot too_large
    with stories_of(mesh) as stories:
        with pytest.raises(RequestFailed) as over_spec:
            stories.submit_request({"plot": "x" * 5000})
        assert over_spec.value.code == "too_large"
        # When the plot is 10 MB, over the envelope's 4 MiB string limit as well
        with pytest.raises(RequestFailed) as over_envelope:
            stories.submit_request({"plot": "x" * 10_000_000})
    # Then it is too_large too (a value over a limit), not bad_request (malformed): today
    # envelope._unpack turns msgpack's "exceeds max_str_len" ValueError into a BodyError
    assert over_envelope.value.code == "too_large", over_envelope.value.message


def test_unknown_ops_and_ids_get_clear_errors_and_the_service_keeps_serving(
        mesh: LocalMesh, book: dict[str, Any]) -> None:
    with stories_of(mesh) as stories:
        # When an unknown op is asked for
        with pytest.raises(RequestFailed) as bad_op:
            stories.client.call("story.query", {"op": "explode", "corr": book["corr"]})
        # Then it is a bad_request naming the ops there are
        assert bad_op.value.code == "bad_request"
        assert "unknown op" in bad_op.value.message
        assert "status" in bad_op.value.message
        # When a story id that does not exist is asked about, in every op
        for ask in (stories.status, stories.history, stories.fetch, stories.cancel):
            with pytest.raises(RequestFailed) as unknown:
                ask("st-doesnotexist")
            # Then the answer is not_found, naming the id
            assert unknown.value.code == "not_found"
            assert "st-doesnotexist" in unknown.value.message
        # And a watcher of an unknown story is told so too
        with pytest.raises(RequestFailed) as unwatched:
            stories.wait("st-doesnotexist")
        assert unwatched.value.code == "not_found"
        # And the real story is still served
        assert stories.status(book["corr"])["status"] == "complete"


# --- pipelining, read from the journal's step times ------------------------------------------

def _steps(path: Path, corr: str) -> list[StepRow]:
    with open_journal(path) as journal:
        return [s for s in journal.steps(corr, with_blobs=False) if s.finished is not None]


def _sleepy_story(tmp_path: Path, costs: Costs, illustrators: int, chapters: int) -> list[StepRow]:
    journal = tmp_path / "journal.db"
    with SleepyMesh(mesh_settings(), costs, illustrators=illustrators, journal=journal) as sm, \
            stories_of(sm) as stories:
        corr = stories.submit("A sleepy mouse", chapters=chapters, seed=1)
        assert stories.wait(corr)["status"] == "complete"
    return _steps(journal, corr)


def _painting(step: StepRow, cost: float) -> tuple[float, float]:
    """When a picture was being painted: the `cost` seconds before it was journalled.
    (Its `started` is when it was asked for; with a busy illustrator it waited first.)"""
    assert step.finished is not None
    return step.finished - cost, step.finished


def _overlap(a: tuple[float, float], b: tuple[float, float | None]) -> float:
    assert b[1] is not None
    return min(a[1], b[1]) - max(a[0], b[0])


def test_two_illustrators_paint_side_by_side_while_later_chapters_are_written(
        tmp_path: Path) -> None:
    # Given sleepy agents: chapters take 0.3 s, pictures 0.6 s, and two illustrators
    costs = Costs(outline=0.05, chapter=0.3, picture=0.6, publish=0.05)
    # When a four-chapter story runs
    steps = _sleepy_story(tmp_path, costs, illustrators=2, chapters=4)
    pictures = [s for s in steps if s.kind in (StepKind.PICTURE, StepKind.COVER)]
    chapters = {s.index: s for s in steps if s.kind == StepKind.CHAPTER}
    assert len(pictures) == 5
    assert len(chapters) == 4
    # Then two pictures were painted at the same time: one illustrator alone cannot
    # journal two pictures less than a picture's cost apart
    pairs = [(a, b) for a, b in combinations(pictures, 2)
             if _overlap(_painting(a, costs.picture), _painting(b, costs.picture))
             > costs.picture / 4]
    assert pairs, [(s.kind, s.index, s.started, s.finished) for s in pictures]
    # And a chapter's picture was painted while a later chapter was being written
    assert any(_overlap(_painting(p, costs.picture), (c.started, c.finished)) > costs.chapter / 4
               for p in pictures if p.kind == StepKind.PICTURE
               for i, c in chapters.items() if i > p.index)
    # And each picture was asked for as soon as its chapter was journalled
    for p in pictures:
        if p.kind == StepKind.PICTURE:
            assert p.started - chapters[p.index].finished < 0.2  # type: ignore[operator]


def test_one_illustrator_paints_one_picture_at_a_time(tmp_path: Path) -> None:
    # Given the same story with a single illustrator (the check above must be able to fail)
    costs = Costs(outline=0.05, chapter=0.1, picture=0.3, publish=0.05)
    # When it runs
    steps = _sleepy_story(tmp_path, costs, illustrators=1, chapters=3)
    # Then no two pictures were journalled less than a picture's cost apart
    done = sorted(s.finished for s in steps if s.kind in (StepKind.PICTURE, StepKind.COVER)
                  if s.finished is not None)
    assert len(done) == 4
    assert all(b - a >= costs.picture * 0.95 for a, b in pairwise(done)), done


def test_a_running_story_can_be_cancelled(tmp_path: Path) -> None:
    # Given a slow story under way (each chapter takes half a second)
    costs = Costs(outline=0.05, chapter=0.5, picture=0.1, publish=0.05)
    with SleepyMesh(mesh_settings(), costs, journal=tmp_path / "j.db") as sm, \
            stories_of(sm) as stories:
        corr = stories.submit("A sleepy mouse", chapters=10)
        # When it is cancelled
        assert stories.cancel(corr)["status"] == "cancelled"
        # Then the watcher ends with cancelled, status says so, and there is no book
        assert stories.wait(corr)["status"] == "cancelled"
        assert stories.status(corr)["status"] == "cancelled"
        assert stories.fetch(corr) == {}
        history = stories.history(corr)
    assert ("client", "cancel") in {(h["sender"], h["message_type"]) for h in history}
    assert not any(h["receiver"] == "publisher" for h in history)


# --- the seed's Python functions ------------------------------------------------------------

@pytest.fixture
def seed_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh process-wide session for the seed functions (an in-process mesh), closed after."""
    for name in [n for n in __import__("os").environ if n.startswith("STORYMESH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STORYMESH_CONFIG", "/dev/null")
    monkeypatch.setenv("STORYMESH_PICTURE_SIZE", str(PICTURE_SIDE))
    monkeypatch.setenv("STORYMESH_HEARTBEAT_INTERVAL", "0.1")
    session = api._Session()
    monkeypatch.setattr(api, "_session", session)
    yield
    if session.mesh is not None:
        session.mesh.close()


def test_the_seed_functions_make_a_book_and_report_on_it(seed_session: None,
                                                         tmp_path: Path) -> None:
    # When a story is made through the seed's function, with no broker
    result = api.create_story({"plot": "A little fox learns to share", "themes": ["kindness"],
                               "target_age": "4-7", "chapters": 2, "art_style": "watercolor"},
                              out_dir=tmp_path)
    # Then it is complete and each format is a file written to the folder
    assert result["status"] == "complete", result
    paths = {fmt: Path(p) for fmt, p in result["publications"].items()}
    assert set(paths) == {"pdf", "html", "epub"}
    for fmt, path in paths.items():
        assert path.parent == tmp_path
        assert path.suffix == f".{fmt}"
        assert path.stat().st_size > 0
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    # And its status and message history can be asked for by its id
    corr = result["correlation_id"]
    status = api.get_task_status(corr)
    assert status["status"] == "complete"
    history = api.get_message_history(corr)
    assert history
    assert all({"sender", "receiver", "message_type"} <= set(h) for h in history)
    assert {"author", "illustrator", "publisher"} <= {h["sender"] for h in history}


def test_the_original_designs_orchestrator_runs_over_the_same_mesh(seed_session: None,
                                                                    tmp_path: Path) -> None:
    # Given the original design's orchestrator with no broker (the mesh in this process)
    from storymesh import DistributedOrchestrator
    orchestrator = DistributedOrchestrator()
    # When one story is made and waited for, and another is only submitted
    done = orchestrator.create_story({"plot": "A tortoise wants to win the great snail race",
                                      "chapters": 2}, out_dir=tmp_path)
    queued = orchestrator.create_story("A little cloud is afraid to rain", wait=False)
    # Then the first is complete with its book on disk, the second was accepted at once
    assert done["status"] == "complete", done
    assert Path(done["publications"]["pdf"]).read_bytes().startswith(b"%PDF")
    assert queued["status"] == "accepted"
    # And both can be asked about by id, through the same names as the original design
    assert orchestrator.get_task_status(done["correlation_id"])["status"] == "complete"
    assert orchestrator.get_task_status(queued["correlation_id"])["status"] in {
        "accepted", "running", "complete"}
    senders = {h["sender"] for h in orchestrator.get_message_history(done["correlation_id"])}
    assert {"author", "illustrator", "publisher"} <= senders
