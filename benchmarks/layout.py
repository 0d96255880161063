"""Picture-book layout of the publisher's PDF, measured on books the embedded agents write.

Each book is written by the embedded storyteller and painted by the embedded painter (small
pictures: the layout depends on their shape, not their pixels), then published as a PDF in
each page size, and every page is read back with pypdf. A page fails when it is not the
book's last page, carries no picture and holds fewer than 200 characters of text (a stray
line spilled from a chapter). Also counted: pages ending in a chapter title (a heading that
ends a page) and chapter pictures without any of their chapter's text on the same page.

Books: every plot of benchmarks/plot_fidelity.py, each at one (length, age band) shape in
turn, so all 12 shapes (3/6/10 chapters x 2-4/4-7/8-12/13-18) appear, per seed. Run:

    .venv/bin/python benchmarks/layout.py [--seeds 2] [--page-sizes A4,letter,square]
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.plot_fidelity import PLOTS
from storymesh.agents.author.embedded.plot import world_from_outline
from storymesh.agents.author.embedded.storyteller import (
    chapter_beats,
    write_chapter,
    write_outline,
)
from storymesh.agents.illustrator.embedded.painter import render_png
from storymesh.agents.illustrator.request import Defaults, parse_request
from storymesh.agents.publisher import PublisherAgent
from storymesh.runtime.agent import Final, Request

SHAPES: tuple[tuple[int, str], ...] = tuple(
    (chapters, age) for chapters in (3, 6, 10) for age in ("2-4", "4-7", "8-12", "13-18"))
MIN_CHARS = 200
PICTURE_PX = 96
_FOOTER = re.compile(r"\u2013 \d+ \u2013")


@dataclass(frozen=True, slots=True)
class Page:
    text: str
    images: int


@dataclass
class Tally:
    books: int = 0
    pages: int = 0
    short: int = 0
    heading_last: int = 0
    picture_alone: int = 0


def picture(prompt: str, characters: Sequence[dict[str, str]], seed: int) -> bytes:
    request = parse_request({"prompt": prompt, "characters": list(characters), "seed": seed},
                            Defaults(width=PICTURE_PX, height=PICTURE_PX, steps=1,
                                     guidance=0.0))
    return render_png(request)


def book_payload(plot: str, chapters: int, age: str, seed: int) -> dict[str, object]:
    """The publisher request for one embedded book: its text and its pictures."""
    outline = write_outline(plot=plot, themes=(), target_age=age, art_style="children_book",
                            chapters=chapters, seed=seed)
    world = world_from_outline(outline, target_age=age, themes=None, art_style=None)
    arc = chapter_beats(chapters)
    cast = outline["characters"]
    entries = []
    for index, entry in enumerate(outline["chapters"]):
        draft = write_chapter(world, arc, index, title=entry["title"], seed=seed)
        entries.append({"title": draft.title, "text": draft.text,
                        "png": picture(draft.picture_prompt, cast, seed + index)})
    return {"title": outline["title"], "byline": "by the storymesh storyteller",
            "cover_png": picture(outline["cover_prompt"], cast, seed), "chapters": entries,
            "formats": ["pdf"]}


def pages_of(pdf: bytes) -> list[Page]:
    reader = PdfReader(io.BytesIO(pdf))
    return [Page(_FOOTER.sub("", page.extract_text() or ""), len(page.images))
            for page in reader.pages]


def judge(pages: Sequence[Page], titles: Sequence[str], tally: Tally, label: str,
          verbose: bool) -> None:
    """Count the pages that break the picture-book rules (the cover is page 0)."""
    tally.books += 1
    tally.pages += len(pages)
    for number, page in enumerate(pages[1:-1], start=2):
        text = page.text.strip()
        if page.images == 0 and len(text) < MIN_CHARS:
            tally.short += 1
            if verbose:
                print(f"  short page {number} of {label}: {len(text)} chars: {text[:80]!r}")
    for number, page in enumerate(pages[1:], start=2):
        text = " ".join(page.text.split())
        if any(text.endswith(" ".join(t.split())) for t in titles):
            tally.heading_last += 1
            if verbose:
                print(f"  heading ends page {number} of {label}")
        if page.images and any(text == " ".join(t.split()) for t in titles):
            tally.picture_alone += 1
            if verbose:
                print(f"  picture without text on page {number} of {label}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--page-sizes", default="A4,letter,square")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    sizes = args.page_sizes.split(",")
    publishers = {size: PublisherAgent(page_size=size) for size in sizes}
    tallies = {size: Tally() for size in sizes}
    started = time.monotonic()
    for seed in range(args.seeds):
        for i, plot in enumerate(PLOTS):
            chapters, age = SHAPES[(i + seed * 5) % len(SHAPES)]
            payload = book_payload(plot, chapters, age, seed)
            titles = [str(c["title"]) for c in payload["chapters"]]  # type: ignore[attr-defined]
            for size, publisher in publishers.items():
                replies = list(publisher.handle(Request(id="layout", payload=payload)))
                final = replies[-1]
                assert isinstance(final, Final)
                label = f"{plot[:40]!r} ({chapters} ch, {age}, seed {seed}, {size})"
                judge(pages_of(final.payload["publications"]["pdf"]), titles, tallies[size],
                      label, args.verbose)
    ok = True
    for size, t in tallies.items():
        ok = ok and t.short == t.heading_last == t.picture_alone == 0
        print(f"{size:7} books: {t.books}, pages: {t.pages}; pages (not the last) with < "
              f"{MIN_CHARS} characters and no picture: {t.short}; headings ending a page: "
              f"{t.heading_last}; pictures without their text: {t.picture_alone}")
    print(f"{'PASS' if ok else 'MISS'} in {time.monotonic() - started:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
