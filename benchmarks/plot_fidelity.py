"""Plot fidelity of the embedded storyteller: does the book tell the story that was asked for?

For each plot of a held-out set (written for this benchmark, not for the storyteller:
subjects that are animals, people, objects, weather and machines; one to three characters;
goals with and without a means; named places) it writes the whole book with the embedded
storyteller, at several lengths, age bands and seeds, and prints:

- **words**: the share of the plot's content words (nouns and main verbs, compared by lemma
  with lemminflect: `storymesh.agents.author.embedded.words`) that appear anywhere in the book
  (title, chapter titles, text); the total is over all plots' words; target >= 90%;
- **hero**: whether the hero's kind or name (the plot's subject) is in the book's title or
  its first sentence; target: every book.

Plots missing words are listed with the words they miss. Run:

    .venv/bin/python benchmarks/plot_fidelity.py [--seeds 3] [--verbose]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storymesh.agents.author.embedded import words
from storymesh.agents.author.embedded.plot import World, world_from_outline
from storymesh.agents.author.embedded.storyteller import (
    chapter_beats,
    write_chapter,
    write_outline,
)

PLOTS: tuple[str, ...] = (
    'A shy hedgehog wants to make a friend at the autumn fair',
    'A little kettle is afraid to whistle in front of the whole kitchen',
    'Two otters build a raft to cross a flooded river',
    'A boy named Sam loses his red kite in the park',
    'Grandma and Mia bake a giant pie for the village picnic',
    'A brave snowplough clears the road so the doctor can reach the hospital',
    'A lonely lighthouse keeper finds a baby seal on the rocks',
    'Three bear cubs search the forest for the sweetest honey',
    'A tiny raindrop dreams of becoming part of the ocean',
    'A robot named Bolt learns to dance for the school show',
    'A grumpy old crocodile wants to smile for a photograph',
    "A windmill stops turning and the farmer's daughter climbs up to fix it",
    'A penguin who cannot swim wants to join the fishing trip',
    'Leo and his grandpa plant an apple tree in the backyard',
    'A young witch loses her broom before the moonlight race',
    'A paper boat sails down the gutter to find the sea',
    'A sleepy owl tries to stay awake for the first snowfall',
    'A little train wants to carry the presents over the mountain',
    'A curious fox follows a glowing firefly into the dark woods',
    'A girl named Amara trains her puppy to carry the newspaper',
    'A lost balloon floats over the city looking for a child who let it go',
    'A clumsy giraffe wants to win the jumping contest at the zoo',
    "The wind steals a scarecrow's hat and the crows help him get it back",
    'A stubborn goat refuses to cross the wooden bridge',
    'A small tugboat pulls a giant ship into the harbour',
    'A snowman wants to see the summer before he melts',
    'Two sisters dig for pirate treasure on the beach',
    'A parrot repeats a secret and the whole jungle hears it',
    'A firefighter rescues a kitten from the tallest tree in town',
    'An old tractor is sad because the farmer bought a new one',
    'A dragon who loves books opens a library in the cave',
    'A moth wants to touch the moon',
    'A baker named Rosa runs out of flour on the morning of the wedding',
    'A hungry caterpillar eats through the garden before turning into a butterfly',
    'A thunderstorm scares the little lamb, and the sheepdog comforts her',
    'A lonely whale sings to find her family across the ocean',
    'A mouse and an elephant become friends at the circus',
    'A rusty bicycle wants to ride in the big race again',
    'A young astronaut fixes the broken antenna on the space station',
    'A tiny seed grows into the tallest sunflower in the meadow',
    'Ben and his dog Rocket deliver letters through the snowy village',
    'A nervous knight must tame a dragon to save the princess',
    'A cloud wants to make a rainbow for the sad children in the desert',
    'A clock in the town square forgets how to tick',
    'A kangaroo loses her pouch pocket watch and hops across the outback to find it',
    'A pumpkin hopes to become the biggest lantern at the harvest festival',
)
# (chapters, age band): every length and reading level
SHAPES: tuple[tuple[int, str], ...] = ((3, "2-4"), (3, "4-7"), (5, "8-12"), (8, "13-18"),
                                       (1, "4-7"), (2, "4-7"))


def write_book(plot: str, *, chapters: int, age: str, seed: int) -> tuple[World, list[str]]:
    """The whole embedded book as texts: the title, then per chapter its title and text."""
    outline = write_outline(plot=plot, themes=(), target_age=age, art_style="children_book",
                            chapters=chapters, seed=seed)
    world = world_from_outline(outline, target_age=age, themes=None, art_style=None)
    arc = chapter_beats(chapters)
    texts = [str(outline["title"])]
    for index, entry in enumerate(outline["chapters"]):
        draft = write_chapter(world, arc, index, title=entry["title"], seed=seed)
        texts += [draft.title, draft.text]
    return world, texts


def hero_up_front(plot: str, world: World, texts: Sequence[str]) -> bool:
    """The hero's kind or name (as the plot says it) in the title or the first sentence."""
    first = re.split(r"(?<=[.!?])\s", texts[2].strip(), maxsplit=1)[0] if len(texts) > 2 else ""
    have = words.text_lemmas([texts[0], first])
    return bool(set(subject_words(plot)) & have)


def subject_words(plot: str) -> list[str]:
    """The plot's content words before its first verb: its subject ("lighthouse keeper",
    "grandma", "mia", "priya"), read without the storyteller's parser."""
    ahead: list[str] = []
    for token in words.tokens(plot):
        if token.lower() in ("named", "called"):
            continue
        if ahead and words.is_present_verb(token) and token.lower() not in ("named",):
            break
        ahead.append(token)
    return words.content_words(" ".join(ahead))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    total = found = books = heroes = 0
    for plot in PLOTS:
        misses: dict[str, int] = {}
        for seed in range(args.seeds):
            for chapters, age in SHAPES:
                world, texts = write_book(plot, chapters=chapters, age=age, seed=seed)
                wanted = words.content_words(plot)
                missing = words.missing_words(plot, texts)
                total += len(wanted)
                found += len(wanted) - len(missing)
                books += 1
                heroes += hero_up_front(plot, world, texts)
                for word in missing:
                    misses[word] = misses.get(word, 0) + 1
                if args.verbose and seed == 0 and chapters == 3 and age == "4-7":
                    print(f"\n# {plot}\n" + "\n".join(texts) + "\n")
        if misses:
            print(f"{plot!r}: misses " + ", ".join(f"{w} ({n})" for w, n in misses.items()))
    share = found / total if total else 1.0
    print(f"\nplots: {len(PLOTS)}, books: {books} ({args.seeds} seeds x {len(SHAPES)} shapes)")
    print(f"words: {found}/{total} = {share:.1%} {'PASS' if share >= 0.9 else 'MISS'} (>= 90%)")
    print(f"hero in title or first sentence: {heroes}/{books} "
          f"{'PASS' if heroes == books else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
