"""The embedded storyteller follows the plot: the parser's roles, and books that tell them.

Plots here were written for these tests, not for the storyteller; the full held-out set and
its figures are in benchmarks/plot_fidelity.py (docs/agents-author.md).
"""

from __future__ import annotations

import pytest

from storymesh.agents.author.embedded import lexicon as lx
from storymesh.agents.author.embedded import words
from storymesh.agents.author.embedded.parse import read_plot
from storymesh.agents.author.embedded.plot import analyze, world_from_outline
from storymesh.agents.author.embedded.storyteller import (
    chapter_beats,
    write_chapter,
    write_outline,
)


def _book(plot: str, *, chapters: int = 3, age: str = "4-7", seed: int = 0) -> list[str]:
    outline = write_outline(plot=plot, themes=(), target_age=age, art_style="children_book",
                            chapters=chapters, seed=seed)
    world = world_from_outline(outline, target_age=age, themes=None, art_style=None)
    texts = [str(outline["title"])]
    for index, entry in enumerate(outline["chapters"]):
        draft = write_chapter(world, chapter_beats(chapters), index, title=entry["title"],
                              seed=seed)
        texts += [draft.title, draft.text]
    return texts


def test_a_kind_the_lexicon_lacks_is_the_hero() -> None:
    # Given a plot about a cloud, When it is read, Then the hero is a cloud who fears rain
    reading = read_plot("A little cloud is afraid to rain on the farm")
    assert [(b.noun, b.count) for b in reading.subjects] == [("cloud", 1)]
    assert reading.goal == "rain on the farm"
    assert reading.fear == "raining on the farm"
    assert reading.place == "the farm"


def test_goal_and_means_are_split_and_a_group_counts() -> None:
    reading = read_plot("Two otters build a raft to cross a flooded river")
    assert [(b.noun, b.count) for b in reading.subjects] == [("otter", 2)]
    assert (reading.means, reading.goal) == ("build a raft", "cross a flooded river")
    cubs = read_plot("Three bear cubs search the forest for the sweetest honey")
    assert cubs.subjects[0].count == 3
    assert cubs.goal == "find the sweetest honey"


def test_names_and_other_beings() -> None:
    priya = read_plot("A girl named Priya repairs her grandfather's old clock")
    assert (priya.subjects[0].noun, priya.subjects[0].name) == ("girl", "Priya")
    assert priya.goal == "repair her grandfather's old clock"
    assert [b.noun for b in priya.beings] == ["grandfather"]
    pair = read_plot("Ben and his dog Rocket deliver letters through the snowy village")
    assert [(b.noun, b.name) for b in pair.subjects] == [("", "Ben"), ("dog", "Rocket")]
    assert pair.goal == "deliver letters through the snowy village"


def test_inciting_events_relative_clauses_and_other_subjects() -> None:
    kite = read_plot("A boy named Sam loses his red kite in the park")
    assert kite.trouble == "lost his red kite in the park"
    assert kite.goal == "find his red kite"
    penguin = read_plot("A penguin who cannot swim wants to join the fishing trip")
    assert penguin.habit == "could not swim"
    assert penguin.goal == "join the fishing trip"
    wind = read_plot("The wind steals a scarecrow's hat and the crows help him get it back")
    assert wind.events == ("the crows helped him get it back",)
    clock = read_plot("A clock in the town square forgets how to tick")
    assert clock.subjects[0].noun == "clock"
    assert clock.goal == "remember how to tick"


def test_the_hero_of_a_compound_is_the_being() -> None:
    # "the last dinosaur egg": the story follows the dinosaur
    reading = read_plot("The last dinosaur egg hopes to hatch before the volcano wakes")
    assert reading.subjects[0].noun == "dinosaur"
    world = analyze("Grandpa and Leo fly a kite on the windy hill", themes=(), seed=1,
                    target_age="4-7", art_style="children_book")
    assert (world.hero.name, world.friend.name, world.friend_in_plot) == ("Grandpa", "Leo", True)


SAMPLE = (
    "A tortoise wants to win the great snail race",
    "A little kettle is afraid to whistle in front of the whole kitchen",
    "Two otters build a raft to cross a flooded river",
    "A girl named Amara trains her puppy to carry the newspaper",
    "A small tugboat pulls a giant ship into the harbour",
    "A kangaroo loses her pouch pocket watch and hops across the outback to find it",
    "A nervous knight must tame a dragon to save the princess",
    "A thunderstorm scares the little lamb, and the sheepdog comforts her",
)


@pytest.mark.parametrize(("chapters", "age"), [(1, "4-7"), (3, "2-4"), (5, "8-12"), (8, "13-18")])
def test_books_tell_the_plot(chapters: int, age: str) -> None:
    # Given plots the storyteller was not written for, When books are written at every
    # length and age, Then nearly all the plots' nouns and verbs are in them, and the hero's
    # kind or name opens the book
    total = found = 0
    for plot in SAMPLE:
        texts = _book(plot, chapters=chapters, age=age)
        wanted = words.content_words(plot)
        total += len(wanted)
        found += len(wanted) - len(words.missing_words(plot, texts))
        first = texts[2].split(". ")[0]
        subject = read_plot(plot).subjects[0]
        assert {subject.noun, subject.name.lower()} & words.text_lemmas([texts[0], first])
    assert found / total >= 0.9


def test_the_goal_is_won_in_the_climax() -> None:
    texts = _book("Two otters build a raft to cross a flooded river", chapters=3)
    assert "built a raft" in texts[4]  # the means, with the friend, in the middle
    assert "crossed a flooded river" in texts[6]  # the goal, at the end


def test_content_words_are_nouns_and_main_verbs_by_lemma() -> None:
    assert words.content_words("A girl named Priya repairs her grandfather's old clock") == [
        "girl", "priya", "repair", "grandfather", "clock"]
    assert words.missing_words("Two otters build a raft", ["The otter built rafts."]) == []


def test_a_grandparent_goes_by_grandpa_not_grandpa_the_grandfather() -> None:
    # Given a plot with a grandpa / When the book is written
    text = " ".join(_book("Leo and his grandpa plant an apple tree in the backyard"))
    # Then he is Grandpa, never "Grandpa the grandpa" or "Grandpa the grandfather"
    assert "Grandpa" in text
    assert "Grandpa the grand" not in text


def test_a_plot_without_a_goal_takes_one_from_the_heros_feeling() -> None:
    # Given a plot that says how the hero feels but not what they want
    world = analyze("An old tractor is sad because the farmer bought a new one", themes=(),
                    seed=0, target_age="4-7", art_style="children_book")
    # Then the goal answers the feeling, not a goal of the setting's
    assert world.goal == "feel happy again"


@pytest.mark.parametrize("plot", ["A brave mouse goes on an adventure",
                                  "A shy dragon learns to dance",
                                  "A robot and a fox build a boat"])
def test_a_made_up_name_suits_the_character_it_is_given_to(plot: str) -> None:
    # Given plots that name nobody, over many seeds
    for seed in range(60):
        world = analyze(plot, themes=["friendship"], seed=seed, target_age="4-7",
                        art_style="watercolor")
        # Then no "she" is called Milo and no "he" Mabel, hero or friend
        for character in (world.hero, world.friend):
            assert lx.name_suits(character.name, character.pronoun), (seed, character)
