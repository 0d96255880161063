"""HTML rendering: the book as one self-contained, UTF-8 web page.

Owns the HTML output: pictures inlined as `data:image/png;base64,...` URIs, a small inline
stylesheet (large readable type, centred pictures, a narrow column), a cover, a table of
contents, one section per chapter and "The End". Every piece of story text is escaped, so a
title such as `<script>` shows as text and never runs. No external file is referenced.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Final

from storymesh.agents.publisher.model import Book, Chapter, Picture

STYLESHEET: Final = """
:root { color-scheme: light; }
body { margin: 0; background: #fdf8ef; color: #2b2d42;
  font-family: "Palatino Linotype", Palatino, Georgia, "Book Antiqua", serif;
  font-size: 1.3rem; line-height: 1.6; }
header.cover, main { max-width: 42rem; margin: 0 auto; padding: 1.5rem; }
header.cover { text-align: center; min-height: 90vh; }
h1 { color: #1d3557; font-size: 2.6rem; line-height: 1.2; margin: 1.5rem 0; }
h2 { color: #1d3557; font-size: 1.9rem; text-align: center; margin: 3rem 0 1rem; }
.byline { color: #6c757d; font-style: italic; font-size: 1.25rem; }
figure { margin: 1.5rem 0; text-align: center; }
img { max-width: 100%; height: auto; border-radius: 0.6rem;
  box-shadow: 0 0.2rem 0.8rem rgba(0, 0, 0, 0.15); }
.placeholder { display: flex; align-items: center; justify-content: center;
  aspect-ratio: 4 / 3; max-width: 100%; border: 3px dashed #adb5bd; border-radius: 0.6rem;
  background: #f1f3f5; color: #6c757d; font-style: italic; }
nav.toc ol { padding-left: 1.5rem; }
nav.toc a { color: #1d3557; }
p { margin: 0 0 1rem; }
.the-end { color: #1d3557; font-style: italic; font-weight: bold; font-size: 1.8rem;
  text-align: center; margin: 3rem 0; }
/* A chapter's title, picture and first paragraph stay together on a printed page. */
h2 { break-after: avoid; page-break-after: avoid; }
figure { break-inside: avoid; page-break-inside: avoid; break-after: avoid;
  page-break-after: avoid; }
section.chapter > figure + p { break-before: avoid; page-break-before: avoid; }
p { orphans: 2; widows: 2; }
@media print { section.chapter { break-before: page; } header.cover { min-height: auto; }
  figure img { max-height: 55vh; width: auto; } }
"""


def render_html(book: Book) -> bytes:
    """Render the book as one HTML5 page (UTF-8 bytes) that needs no other file."""
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{escape(book.language)}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(book.title)}</title>",
    ]
    if book.byline:
        parts.append(f'<meta name="author" content="{escape(book.byline)}">')
    parts += [f"<style>{STYLESHEET}</style>", "</head>", "<body>", _cover(book), "<main>",
              _contents(book)]
    parts += [_chapter(index, chapter) for index, chapter in enumerate(book.chapters)]
    parts += ['<p class="the-end">The End</p>', "</main>", "</body>", "</html>", ""]
    return "\n".join(parts).encode("utf-8")


def _cover(book: Book) -> str:
    byline = f'<p class="byline">{escape(book.byline)}</p>' if book.byline else ""
    picture = _figure(book.cover, f"Cover picture: {book.title}")
    return f'<header class="cover">\n<h1>{escape(book.title)}</h1>\n{picture}\n{byline}\n</header>'


def _contents(book: Book) -> str:
    items = "".join(f'<li><a href="#chapter-{index + 1}">{escape(chapter.title)}</a></li>'
                    for index, chapter in enumerate(book.chapters))
    return f'<nav class="toc" aria-label="Contents">\n<h2>Contents</h2>\n<ol>{items}</ol>\n</nav>'


def _chapter(index: int, chapter: Chapter) -> str:
    paragraphs = "\n".join(f"<p>{_text(text)}</p>" for text in chapter.paragraphs)
    figure = _figure(chapter.picture, f"Picture for chapter {index + 1}: {chapter.title}")
    return (f'<section class="chapter" id="chapter-{index + 1}">\n'
            f"<h2>{escape(chapter.title)}</h2>\n{figure}\n{paragraphs}\n</section>")


def _figure(picture: Picture | None, alt: str) -> str:
    if picture is None:
        return ('<figure><div class="placeholder" role="img" aria-label="picture missing">'
                "picture missing</div></figure>")
    data = base64.b64encode(picture.png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}" '
            f'width="{picture.width}" height="{picture.height}"></figure>')


def _text(text: str) -> str:
    """Escape a paragraph; a single newline inside it stays a line break."""
    return "<br>\n".join(escape(line) for line in text.split("\n"))
