"""The publisher's book model: a `story.publisher` payload parsed and checked once.

`parse_request()` turns a request payload into a `PublishJob` (a `Book` plus the formats to
render), so the PDF, HTML and EPUB renderers share one parser and never re-validate. It
raises `FatalAgentError` ("bad_request" / "too_large") for structural problems, with the
shared checks of `storymesh.vocabulary`. Pictures are
decoded here too, once: bytes that are not a decodable image become a missing picture (each
renderer draws a placeholder), never an error, so one broken illustration cannot sink a book.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from PIL import Image, UnidentifiedImageError

from storymesh import vocabulary

log = logging.getLogger(__name__)

DEFAULT_LANGUAGE: Final = "en"
# Pictures past this many pixels are not even decoded (a decompression bomb, not a drawing).
MAX_PICTURE_PIXELS: Final = 64 * 1024 * 1024
# Larger pictures are scaled down to this side: nothing prints or displays sharper.
MAX_PICTURE_SIDE: Final = 4096

_LANGUAGE_RE: Final = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}")
# Characters XML 1.0 forbids (C0 controls but tab/newline/CR, surrogates, U+FFFE/FFFF):
# an LLM can emit them, and they would break the EPUB's XHTML and reportlab's markup parser.
_XML_INVALID: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_BLANK_LINES: Final = re.compile(r"\n[ \t]*\n+")


@dataclass(frozen=True, slots=True)
class Picture:
    """A decoded, checked picture: PNG bytes (RGB or RGBA) and its pixel size."""

    png: bytes
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Chapter:
    """One chapter: a title, its paragraphs (single newlines kept as line breaks), a picture."""

    title: str
    paragraphs: tuple[str, ...]
    picture: Picture | None  # None: missing or undecodable; renderers draw a placeholder


@dataclass(frozen=True, slots=True)
class Book:
    """A whole picture book, ready to render."""

    title: str
    byline: str
    language: str
    cover: Picture | None
    chapters: tuple[Chapter, ...]

    @property
    def pictures(self) -> tuple[Picture, ...]:
        """Every picture present, cover first, in reading order."""
        found = [self.cover] + [chapter.picture for chapter in self.chapters]
        return tuple(picture for picture in found if picture is not None)


@dataclass(frozen=True, slots=True)
class PublishJob:
    """What one request asks for: the book and the formats, in the order to render them."""

    book: Book
    formats: tuple[str, ...]


def parse_request(payload: Mapping[str, Any], default_formats: Sequence[str]) -> PublishJob:
    """Check a `story.publisher` payload and build the book; FatalAgentError if it is bad."""
    if not isinstance(payload, Mapping):
        raise vocabulary.bad("the request payload must be a map")
    book = Book(
        title=_line(payload, "title", required=True),
        byline=_line(payload, "byline"),
        language=_language(payload.get("language")),
        cover=decode_picture(payload, "cover_png"),
        chapters=_chapters(payload),
    )
    return PublishJob(book=book, formats=vocabulary.formats_field(payload, default_formats))


def decode_picture(payload: Mapping[str, Any], key: str, where: str | None = None
                   ) -> Picture | None:
    """Decode the picture bytes at `payload[key]`; None (a placeholder later) when absent or
    not a readable image.

    A value that is not bytes at all is a malformed request, not a bad drawing: bad_request.
    """
    where = where or key
    raw = vocabulary.bytes_field(payload, key, where=where)
    if raw is None:
        return None
    if not raw:
        log.warning("%s is empty; drawing a placeholder", where)
        return None
    try:
        return _load_picture(raw, where)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            EOFError) as exc:
        # Pillow reports broken files through several exception types; all mean "no picture".
        log.warning("%s is not a readable image (%s); drawing a placeholder", where, exc)
        return None


def _load_picture(raw: bytes, where: str) -> Picture | None:
    with Image.open(io.BytesIO(raw)) as image:
        width, height = image.size
        if width < 1 or height < 1 or width * height > MAX_PICTURE_PIXELS:
            log.warning("%s is %sx%s pixels; drawing a placeholder", where, width, height)
            return None
        image.load()  # decodes every pixel: a truncated file fails here, not in a renderer
        if image.format == "PNG" and image.mode in ("RGB", "RGBA") and max(width, height) <= (
                MAX_PICTURE_SIDE):
            return Picture(png=raw, width=width, height=height)
        return _normalised(image)


def _normalised(image: Image.Image) -> Picture:
    """Re-encode as an RGB(A) PNG no larger than MAX_PICTURE_SIDE, so renderers see one kind."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    converted = image.convert("RGBA" if has_alpha else "RGB")
    converted.thumbnail((MAX_PICTURE_SIDE, MAX_PICTURE_SIDE))
    out = io.BytesIO()
    converted.save(out, format="PNG")
    return Picture(png=out.getvalue(), width=converted.width, height=converted.height)


def clean_text(text: str) -> str:
    """Normalise newlines and drop characters that XML (hence XHTML and reportlab) rejects."""
    return _XML_INVALID.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def split_paragraphs(text: str) -> tuple[str, ...]:
    """Paragraphs are separated by blank lines; a single newline stays as a line break."""
    blocks = (block.strip() for block in _BLANK_LINES.split(clean_text(text)))
    return tuple("\n".join(line.strip() for line in block.split("\n")) for block in blocks if block)


def _chapters(payload: Mapping[str, Any]) -> tuple[Chapter, ...]:
    chapters = vocabulary.list_field(payload, "chapters", vocabulary.MAX_CHAPTERS,
                                     required=True)
    if not chapters:
        raise vocabulary.bad("'chapters' is empty: a book needs at least one chapter")
    return tuple(_chapter(index, item) for index, item in enumerate(chapters))


def _chapter(index: int, value: Any) -> Chapter:
    where = f"chapters[{index}]"
    if not isinstance(value, Mapping):
        raise vocabulary.bad(f"'{where}' must be a map with title, text and png")
    if value.get("text") is None:  # an empty text is a chapter of pictures; no text is a bug
        raise vocabulary.bad(f"'{where}.text' is required")
    text = vocabulary.text_field(value, "text", vocabulary.MAX_CHAPTER_TEXT_CHARS,
                                 where=f"{where}.text")
    return Chapter(
        title=_line(value, "title", where=f"{where}.title") or f"Chapter {index + 1}",
        paragraphs=split_paragraphs(text),
        picture=decode_picture(value, "png", f"{where}.png"),
    )


def _line(payload: Mapping[str, Any], key: str, *, required: bool = False,
          where: str | None = None) -> str:
    """A one-line text field (a title, a byline): checked, cleaned, on one line."""
    value = vocabulary.text_field(payload, key, vocabulary.MAX_TITLE_CHARS, required=required,
                                  where=where)
    cleaned = " ".join(clean_text(value).split())  # a title is one line, whatever was sent
    if required and not cleaned:  # only characters that XML cannot carry
        raise vocabulary.bad(f"'{where or key}' must not be empty")
    return cleaned


def _language(value: Any) -> str:
    if value is None:
        return DEFAULT_LANGUAGE
    if not isinstance(value, str) or not _LANGUAGE_RE.fullmatch(value):
        raise vocabulary.bad(f"'language' must be a language tag such as 'en' or 'pt-BR', "
                             f"got {value!r}")
    return value
