"""The transformers author follows the plot, in the language asked for.

The prompts (pure): the outline prompt carries the whole plot and each chapter's plot points,
the revision prompt names what the outline left out, the chapter prompt carries the plot and
its chapter's points; each names the book's language. The repair (pure): chapter lines the
model rewrote are taken, and what is still missing is filled from the plot points. With the
tiny random model: the outline is asked for once more when it leaves the plot out, and the
FINAL outline tells every content word of the plot. Languages: the embedded storyteller
writes English only and says so; op `languages` answers what an author writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storymesh.agents.author import AuthorAgent, prompts
from storymesh.agents.author.agent import _points
from storymesh.agents.author.embedded import words as wd
from storymesh.agents.author.embedded.storyteller import write_outline
from storymesh.agents.author.repair import (
    outline_missing,
    outline_texts,
    revise_chapters,
    tell_plot,
)
from storymesh.agents.author.requests import parse_chapter, parse_outline
from storymesh.errors import FatalAgentError
from storymesh.runtime.agent import Final, Request

OTTERS = "Two otters build a raft to cross a flooded river"
TORTOISE = "A tortoise wants to win the great snail race"
PLOTS = (OTTERS, TORTOISE, "A girl named Priya repairs her grandfather's old clock",
         "A little cloud is afraid to rain on the farm",
         "A lighthouse keeper and his cat save a ship in a storm")


def _outline_request(plot: str = OTTERS, **fields: Any) -> Any:
    return parse_outline({"op": "outline", "plot": plot, "chapters": 3, "seed": 2, **fields})


def _fallback(plot: str = OTTERS, chapters: int = 3) -> dict[str, Any]:
    return write_outline(plot=plot, themes=[], target_age="4-7", art_style="comic",
                         chapters=chapters, seed=2)


def _user(messages: list[dict[str, str]]) -> str:
    return messages[-1]["content"]


def _final(agent: AuthorAgent, payload: dict[str, Any]) -> dict[str, Any]:
    replies = list(agent.handle(Request(id="r", payload=payload)))
    assert isinstance(replies[-1], Final)
    return replies[-1].payload


# --- prompts ------------------------------------------------------------------------------


def test_the_outline_prompt_carries_the_plot_and_each_chapters_points() -> None:
    # Given an outline request and the storyteller's plot points per chapter
    fallback = _fallback()
    points = _points(fallback)
    # When the outline prompt is built
    user = _user(prompts.outline_messages(_outline_request(), points))
    # Then it carries the whole plot, and every chapter that has points gets a line of them
    assert f"Plot: {OTTERS}" in user
    for n, chapter_points in enumerate(points, 1):
        if chapter_points:
            assert f"- Chapter {n}: {' '.join(chapter_points)}" in user
    # and between them the points tell every content word of the plot
    assert wd.missing_words(OTTERS, [p for ps in points for p in ps]) == []
    assert "Write in English." in user


@pytest.mark.parametrize("plot", PLOTS)
def test_the_plot_points_name_the_heros_kind_and_the_plot(plot: str) -> None:
    points = _points(_fallback(plot, chapters=5))
    told = [p for ps in points for p in ps]
    assert wd.coverage(plot, told) >= 0.75, told


def test_a_prompt_in_another_language_asks_for_it_and_keeps_the_labels() -> None:
    user = _user(prompts.outline_messages(_outline_request(language="fr"),
                                          _points(_fallback())))
    assert "Write everything in French" in user
    assert "Keep the labels (Title, Hero, Friend, Chapter) in English" in user
    assert "Title: <the book's title>" in user  # the labels repair.py reads
    assert prompts.language_name("pt-BR") == "Portuguese (pt-BR)"
    assert prompts.language_name("tlh") == "the language with the code tlh"


def test_the_revision_prompt_names_what_is_missing_and_where_it_goes() -> None:
    # Given an outline whose chapters never mention the raft
    fallback = _fallback()
    points = _points(fallback)
    outline = {**fallback, "chapters": [{**c, "title": f"Part {i}", "plan": "They play."}
                                        for i, c in enumerate(fallback["chapters"], 1)]}
    missing = outline_missing(OTTERS, outline)
    # When the revision prompt is built
    user = _user(prompts.revision_messages(_outline_request(), outline, missing, points))
    # Then it shows the current chapter lines, names the missing words and the points
    assert "Chapter 2: Part 2 - They play." in user
    assert "raft" in missing
    assert "raft" in user.split("leaves out")[1]
    raft_chapter = next(n for n, ps in enumerate(points, 1) if any("raft" in p for p in ps))
    assert f"- Chapter {raft_chapter}:" in user
    assert user.rstrip().endswith("Chapter 3: <chapter title> - <one sentence: what happens>")


def test_the_chapter_prompt_carries_the_plot_the_points_and_the_language() -> None:
    # Given a chapter request with the plot, in German
    outline = _fallback()
    req = parse_chapter({"op": "chapter", "outline": outline, "index": 1, "plot": OTTERS,
                         "language": "de"})
    # When its prompt is built with its points
    from storymesh.agents.author.embedded.plot import world_from_outline
    world = world_from_outline(outline, target_age=None, themes=None, art_style=None)
    user = _user(prompts.chapter_messages(req, world, ["Together, they built a raft."]))
    # Then all three are in it, and no heading is asked for
    assert f"Plot of the book: {OTTERS}" in user
    assert "This chapter must tell: Together, they built a raft." in user
    assert "Write everything in German" in user
    assert "Keep the labels" not in user


# --- repair -------------------------------------------------------------------------------


def test_rewritten_chapter_lines_are_taken_and_broken_ones_left() -> None:
    outline = _fallback()
    raw = ("Chapter 1: The Raft - Hazel and Lulu build a raft of sticks.\n"
           "Chapter 2: x\nsomething else\n")
    revised = revise_chapters(outline, raw)
    assert revised["chapters"][0]["title"] == "The Raft"
    assert revised["chapters"][0]["beats"] == outline["chapters"][0]["beats"]
    assert revised["chapters"][1:] == outline["chapters"][1:]


def test_what_is_still_missing_is_filled_from_the_plot_points() -> None:
    # Given a model outline that names neither the raft nor the river
    fallback = _fallback()
    points = _points(fallback)
    outline = {**fallback, "title": "Splash", "characters": [
        {"name": "Hazel", "look": "a brown otter"}, {"name": "Lulu", "look": "an otter"}],
        "chapters": [{**c, "title": f"Part {i}", "plan": "They play in the sun."}
                     for i, c in enumerate(fallback["chapters"], 1)]}
    assert {"raft", "river", "build", "cross"} <= set(outline_missing(OTTERS, outline))
    # When the plot is told into it
    told, filled = tell_plot(outline, OTTERS, points)
    # Then nothing of the plot is missing, and the raft went to the chapter whose point has it
    assert outline_missing(OTTERS, told) == []
    assert "raft" in filled
    raft_chapter = next(i for i, ps in enumerate(points) if any("raft" in p for p in ps))
    assert "raft" in told["chapters"][raft_chapter]["plan"]
    assert all(c["plan"].startswith("They play in the sun.") for c in told["chapters"])
    assert told["title"] == "Splash"


def test_a_word_no_point_tells_brings_the_plots_sentence() -> None:
    # Given points that tell nothing
    outline = _fallback()
    outline = {**outline, "chapters": [{**c, "plan": "A day."} for c in outline["chapters"]]}
    plot = "Grandpa and Leo fly a kite. The wind blows."
    # When it is told
    told, _ = tell_plot(outline, plot, [[], [], []])
    # Then the first chapter's plan carries the plot's sentences that hold the words
    assert "Grandpa and Leo fly a kite." in told["chapters"][0]["plan"]
    assert outline_missing(plot, told) == []


def test_a_huge_plot_does_not_make_a_plan_over_the_limit() -> None:
    plot = "A fox " + " ".join(f"meets a bear{i} and" for i in range(400)) + " sleeps"
    outline = _fallback()
    told, _ = tell_plot(outline, plot, [[], [], []])
    parse_chapter({"op": "chapter", "outline": told, "index": 0})  # still a valid outline


# --- languages ----------------------------------------------------------------------------


def test_the_embedded_storyteller_refuses_another_language_naming_the_backend() -> None:
    agent = AuthorAgent()
    # When an outline in French is asked of the embedded storyteller
    with pytest.raises(FatalAgentError) as caught:
        _final(agent, {"op": "outline", "plot": OTTERS, "language": "fr"})
    # Then it is a bad_request that says what to run instead
    assert caught.value.code == "bad_request"
    assert "transformers" in caught.value.message
    assert "'fr'" in caught.value.message
    # and English in any region is fine; chapters check too
    outline = _final(agent, {"op": "outline", "plot": OTTERS, "language": "en-GB"})
    with pytest.raises(FatalAgentError):
        _final(agent, {"op": "chapter", "outline": outline, "index": 0, "language": "ru"})


@pytest.mark.parametrize("language", ["english", "e", "en_US", 7, "fr-"])
def test_a_malformed_language_is_a_bad_request(language: object) -> None:
    with pytest.raises(FatalAgentError) as caught:
        _final(AuthorAgent(), {"op": "outline", "plot": OTTERS, "language": language})
    assert caught.value.code == "bad_request"
    assert "'language'" in caught.value.message


def test_op_languages_answers_what_the_author_writes() -> None:
    assert _final(AuthorAgent(), {"op": "languages"}) == {"backend": "embedded",
                                                          "languages": ["en"]}
    assert AuthorAgent().setup().extra["languages"] == "en"


# --- the tiny random model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def llm(tiny_lm: Path) -> Iterator[AuthorAgent]:
    agent = AuthorAgent(backend="transformers", model=str(tiny_lm), max_new_tokens=32)
    agent.setup()
    yield agent
    agent.teardown()


# The storyteller's outline for these (what the repair fills a word-salad outline from) leaves
# out some of the plot's words, so the model is asked once more.
SHORT_OF_THE_PLOT = (OTTERS, "The last dinosaur egg hatches in a museum",
                     "A robot who loves to paint sells pictures at the market")


def _asked(caplog: pytest.LogCaptureFixture) -> int:
    return sum("asking the model once more" in r.getMessage() for r in caplog.records)


@pytest.mark.ml
@pytest.mark.parametrize("plot", SHORT_OF_THE_PLOT)
def test_a_model_outline_short_of_the_plot_is_asked_once_more_then_tells_it_all(
        llm: AuthorAgent, plot: str, caplog: pytest.LogCaptureFixture) -> None:
    # Given the tiny random model and a plot its repaired outline falls short of
    caplog.set_level(logging.INFO, logger="storymesh.agents.author.agent")
    repaired = write_outline(plot=plot, themes=[], target_age="4-7", art_style="children_book",
                             chapters=4, seed=3)
    assert outline_missing(plot, repaired)
    # When it writes an outline
    outline = _final(llm, {"op": "outline", "plot": plot, "chapters": 4, "seed": 3})
    # Then it was asked once more for what it left out, exactly once
    assert _asked(caplog) == 1
    # and the FINAL outline tells every content word of the plot
    assert outline_missing(plot, outline) == [], outline_texts(outline)
    assert len(outline["chapters"]) == 4
    # and chapters can be written from it
    chapter = _final(llm, {"op": "chapter", "outline": outline, "index": 0, "plot": plot})
    assert chapter["text"].strip()


@pytest.mark.ml
def test_an_outline_that_tells_the_plot_is_not_asked_again(
        llm: AuthorAgent, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="storymesh.agents.author.agent")
    outline = _final(llm, {"op": "outline", "plot": TORTOISE, "chapters": 4, "seed": 3})
    assert outline_missing(TORTOISE, outline) == []
    assert _asked(caplog) == 0


@pytest.mark.ml
def test_a_model_writes_in_another_language_without_the_english_check(
        llm: AuthorAgent, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="storymesh.agents.author.agent")
    outline = _final(llm, {"op": "outline", "plot": "Deux loutres construisent un radeau",
                           "chapters": 2, "language": "fr"})
    assert len(outline["chapters"]) == 2
    assert _asked(caplog) == 0
    assert _final(llm, {"op": "languages"}) == {"backend": "transformers", "languages": ["*"]}
