"""EPUB rendering with ebooklib: the book as an EPUB 3 (with an EPUB 2 NCX for old readers).

Owns the EPUB output: metadata (title, author, language, an identifier derived from the
content), the cover image, a title page, one XHTML document per chapter with its picture,
the navigation document and NCX, and the spine. The zip is rewritten at the end with fixed
timestamps and `mimetype` first and stored, as the OCF spec requires, so the same book
always gives the same bytes.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import uuid
import zipfile
from html import escape
from typing import Final

from ebooklib import epub

from storymesh.agents.publisher.model import Book, Chapter, Picture
from storymesh.errors import FatalAgentError

STYLESHEET: Final = """
body { font-family: serif; line-height: 1.5; margin: 0 4%; }
h1, h2 { color: #1d3557; text-align: center; }
h1 { font-size: 2em; margin: 1em 0; }
h2 { font-size: 1.6em; margin: 0.8em 0; page-break-after: avoid; break-after: avoid; }
p { font-size: 1.15em; margin: 0 0 0.8em; text-indent: 0; }
.byline { color: #6c757d; font-style: italic; text-align: center; }
/* A chapter's title, picture and first paragraph stay together on a reader's page. */
div.picture { text-align: center; margin: 1em 0; page-break-inside: avoid;
  break-inside: avoid; page-break-after: avoid; break-after: avoid; }
div.placeholder { page-break-inside: avoid; break-inside: avoid; page-break-after: avoid;
  break-after: avoid; }
div.picture + p, div.placeholder + p { page-break-before: avoid; break-before: avoid; }
p { orphans: 2; widows: 2; }
div.picture img { max-width: 100%; max-height: 60vh; }
div.placeholder { border: 3px dashed #adb5bd; background: #f1f3f5; color: #6c757d;
  font-style: italic; text-align: center; padding: 4em 1em; margin: 1em 0; }
p.the-end { color: #1d3557; font-size: 1.5em; font-style: italic; font-weight: bold;
  text-align: center; margin-top: 2em; }
"""

# A fixed "modified" time and zip timestamps: EPUB bytes depend on the book alone.
_FIXED_TIME: Final = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_ZIP_TIME: Final = (2000, 1, 1, 0, 0, 0)
_STYLE_HREF: Final = "style/book.css"


def render_epub(book: Book) -> bytes:
    """Render the book as an EPUB file and return its bytes."""
    ebook = epub.EpubBook()
    ebook.set_identifier(_identifier(book))
    ebook.set_title(book.title)
    ebook.set_language(book.language)
    if book.byline:
        ebook.add_author(book.byline)
    style = epub.EpubItem(uid="style", file_name=_STYLE_HREF, media_type="text/css",
                          content=STYLESHEET.encode("utf-8"))
    ebook.add_item(style)
    if book.cover is not None:
        # create_page=False: the title page below shows the cover with the title and byline.
        ebook.set_cover("images/cover.png", book.cover.png, create_page=False)
    title_page = _document(book, "titlepage", "title.xhtml", book.title, _title_body(book))
    chapters = [_chapter(book, index, chapter) for index, chapter in enumerate(book.chapters)]
    for item in [title_page, *chapters]:
        ebook.add_item(item)
    for index, chapter in enumerate(book.chapters):
        if chapter.picture is not None:
            ebook.add_item(epub.EpubImage(uid=f"image-{index + 1}",
                                          file_name=_image_name(index),
                                          media_type="image/png", content=chapter.picture.png))
    ebook.toc = chapters
    ebook.add_item(epub.EpubNcx())
    ebook.add_item(epub.EpubNav())
    ebook.spine = [title_page, "nav", *chapters]
    return _deterministic_zip(_write(ebook))


def _identifier(book: Book) -> str:
    """A stable urn:uuid from the content: the same book keeps the same identifier."""
    digest = hashlib.sha256()
    for part in (book.title, book.byline, book.language):
        digest.update(part.encode("utf-8") + b"\0")
    for chapter in book.chapters:
        digest.update("\n\n".join((chapter.title, *chapter.paragraphs)).encode("utf-8") + b"\0")
    for picture in book.pictures:
        digest.update(hashlib.sha256(picture.png).digest())
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'storymesh:' + digest.hexdigest())}"


def _document(book: Book, uid: str, file_name: str, title: str, body: str) -> epub.EpubHtml:
    item = epub.EpubHtml(uid=uid, file_name=file_name, title=title, lang=book.language)
    item.content = body
    item.add_link(href=_STYLE_HREF, rel="stylesheet", type="text/css")
    return item


def _title_body(book: Book) -> str:
    byline = f'<p class="byline">{escape(book.byline)}</p>' if book.byline else ""
    picture = _picture(book.cover, "images/cover.png", f"Cover picture: {book.title}")
    return f"<h1>{escape(book.title)}</h1>{picture}{byline}"


def _chapter(book: Book, index: int, chapter: Chapter) -> epub.EpubHtml:
    picture = _picture(chapter.picture, _image_name(index),
                       f"Picture for chapter {index + 1}: {chapter.title}")
    paragraphs = "".join(f"<p>{_text(text)}</p>" for text in chapter.paragraphs)
    the_end = '<p class="the-end">The End</p>' if index == len(book.chapters) - 1 else ""
    body = f"<h2>{escape(chapter.title)}</h2>{picture}{paragraphs}{the_end}"
    return _document(book, f"chapter-{index + 1}", f"chapter-{index + 1:02d}.xhtml",
                     chapter.title, body)


def _image_name(index: int) -> str:
    return f"images/chapter-{index + 1:02d}.png"


def _picture(picture: Picture | None, href: str, alt: str) -> str:
    if picture is None:
        return '<div class="placeholder">picture missing</div>'
    return f'<div class="picture"><img src="{href}" alt="{escape(alt)}"/></div>'


def _text(text: str) -> str:
    return "<br/>".join(escape(line) for line in text.split("\n"))


def _write(ebook: epub.EpubBook) -> bytes:
    out = io.BytesIO()
    try:
        epub.write_epub(out, ebook, {"mtime": _FIXED_TIME, "raise_exceptions": True})
    except (OSError, ValueError) as exc:
        # ebooklib reports unusable content this way; the same book would fail again.
        raise FatalAgentError("internal", f"the EPUB could not be written: {exc}") from exc
    return out.getvalue()


def _deterministic_zip(data: bytes) -> bytes:
    """Rewrite the zip with fixed timestamps, `mimetype` first and stored (OCF rules)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        names = source.namelist()
        for name in sorted(names, key=lambda n: n != "mimetype"):  # stable: keeps the rest
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED if name == "mimetype" else (
                zipfile.ZIP_DEFLATED)
            info.external_attr = 0o644 << 16
            target.writestr(info, source.read(name))
    return out.getvalue()
