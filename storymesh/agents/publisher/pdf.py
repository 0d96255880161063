"""PDF rendering with reportlab: the picture-book layout.

Owns the PDF side of publishing: TrueType fonts (registered once, embedded as subsets), page
sizes, the cover page (title, big centred picture, byline), chapter pages laid out like a
picture book (`_plan_chapter`: a chapter a little too long for its page is fitted with a
smaller picture, then tighter spacing; a longer one spills in a balanced split, so no page
holds a stray line; the title and picture always share a page with the first paragraph),
the page-number footer, the chapter outline and the document metadata. Output is
deterministic (reportlab's `invariant` fixes the creation date and file ID), so the same book
always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Final
from xml.sax.saxutils import escape

from reportlab.lib.colors import HexColor
from reportlab.lib.enums import TA_CENTER, TA_LEFT
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
)
from reportlab.platypus.doctemplate import LayoutError
from reportlab.platypus.flowables import HRFlowable

from storymesh.agents.publisher.model import Book, Chapter, Picture
from storymesh.errors import ConfigError, FatalAgentError

log = logging.getLogger(__name__)

PAGE_SIZES: Final[dict[str, tuple[float, float]]] = {
    "A4": A4,
    "letter": LETTER,
    "square": (8.5 * inch, 8.5 * inch),  # the classic square picture-book trim
}

# DejaVu Sans (Latin with accents, Greek, Cyrillic; the Bitstream Vera licence, in
# fonts/LICENSE) ships in this package, so `make run` needs no system font.
_FONT_DIR: Final = os.path.join(os.path.dirname(__file__), "fonts")
_DEJAVU: Final = {"regular": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf",
                  "italic": "DejaVuSans-Oblique.ttf", "bold_italic": "DejaVuSans-BoldOblique.ttf"}

INK: Final = HexColor("#2b2d42")
ACCENT: Final = HexColor("#1d3557")
GOLD: Final = HexColor("#e9a03b")
COVER_PAPER: Final = HexColor("#fff8e7")
MUTED: Final = HexColor("#6c757d")
PLACEHOLDER_FILL: Final = HexColor("#f1f3f5")
PLACEHOLDER_LINE: Final = HexColor("#adb5bd")
PICTURE_EDGE: Final = HexColor("#d9cbb0")

MARGIN_SIDE: Final = 0.8 * inch
MARGIN_TOP: Final = 0.75 * inch
MARGIN_BOTTOM: Final = 1.0 * inch  # the page number sits inside it
# A chapter picture takes half the text area, or up to MAX share when the chapter's text is
# short enough to fit beside it on one page (the usual picture-book page: a big picture and
# a few sentences); down to MIN share to keep a chapter on its one page.
CHAPTER_PICTURE_SHARE: Final = 0.5
CHAPTER_PICTURE_MAX_SHARE: Final = 0.72
CHAPTER_PICTURE_MIN_SHARE: Final = 0.3
# A chapter over its page by up to this share of a page is fitted onto it; when text must
# spill, the page it spills onto carries at least this share of a page of it.
FIT_SHARE: Final = 1 / 3
TITLE_GAP: Final = 16.0  # the rule under a chapter title, and the space under the picture
# Measured heights are a hair off what the frame places; this much room is kept spare on
# each page so a planned page never overflows by a line.
SLACK: Final = 8.0

# reportlab keeps fonts, TTF subsets and some settings in module globals: one build at a
# time, even when the runtime serves several requests on several threads.
_RENDER_LOCK: Final = threading.Lock()


@dataclass(frozen=True, slots=True)
class PdfFonts:
    """Registered reportlab font names for each role, and where they came from."""

    regular: str
    bold: str
    italic: str
    bold_italic: str
    source: str
    covers: frozenset[int] = frozenset()  # the code points every role's font can draw


@dataclass(frozen=True, slots=True)
class PdfLayout:
    """How to lay out a book: the page size name (a PAGE_SIZES key) and the fonts."""

    page_size: str
    fonts: PdfFonts


def register_fonts(font_path: str | None = None) -> PdfFonts:
    """Register the TrueType fonts to embed: `font_path` for every role, or Bitstream Vera.

    Raises ConfigError naming `font_path` when the file is missing or not a usable TTF.
    """
    if font_path is None:
        paths = {role: os.path.join(_FONT_DIR, name) for role, name in _DEJAVU.items()}
        prefix, source = "StorymeshDejaVu", "DejaVu Sans (storymesh)"
    else:
        if not os.path.isfile(font_path):
            raise ConfigError(f"font_path: no such font file {font_path!r}")
        paths = dict.fromkeys(_DEJAVU, font_path)
        # Font names are global in reportlab: derive one per file so two fonts never clash.
        digest = hashlib.sha1(os.path.abspath(font_path).encode()).hexdigest()[:10]
        prefix, source = f"StorymeshFont{digest}", font_path
    names = {role: f"{prefix}-{role}" for role in paths}
    for role, path in paths.items():
        _register_ttf(names[role], path, font_path)
    pdfmetrics.registerFontFamily(prefix, normal=names["regular"], bold=names["bold"],
                                  italic=names["italic"], boldItalic=names["bold_italic"])
    covers = frozenset.intersection(*(frozenset(pdfmetrics.getFont(name).face.charToGlyph)
                                      for name in names.values()))
    return PdfFonts(source=source, covers=covers, **names)


def _register_ttf(name: str, path: str, font_path: str | None) -> None:
    if name in pdfmetrics.getRegisteredFontNames():
        return
    try:
        pdfmetrics.registerFont(TTFont(name, path))
    except (TTFError, OSError, ValueError) as exc:
        if font_path is None:
            raise ConfigError(f"the publisher's font {path!r} is unusable ({exc}); "
                              "reinstall storymesh, or set the publisher's font_path"
                              ) from exc
        raise ConfigError(f"font_path: {font_path!r} is not a usable TrueType font ({exc})"
                          ) from exc


def render_pdf(book: Book, layout: PdfLayout) -> bytes:
    """Render the book as a PDF picture book and return the file's bytes.

    Raises FatalAgentError("bad_request") naming `font_path` when the book's text has
    characters its font cannot draw (they would print as empty boxes).
    """
    _check_coverage(book, layout.fonts)
    width, height = PAGE_SIZES[layout.page_size]
    styles = _Styles.build(layout.fonts, book.title)
    out = io.BytesIO()
    doc = _BookTemplate(
        out, pagesize=(width, height), title=book.title, author=book.byline or None,
        subject="A picture book", creator="storymesh publisher", lang=book.language,
        displayDocTitle=1, invariant=1,
        initialFontName=layout.fonts.regular,  # else every page names a non-embedded Helvetica
        leftMargin=MARGIN_SIDE, rightMargin=MARGIN_SIDE,
        topMargin=MARGIN_TOP, bottomMargin=MARGIN_BOTTOM,
    )
    frame_kw: dict[str, Any] = {"leftPadding": 0, "rightPadding": 0, "topPadding": 0,
                                "bottomPadding": 0}
    frame = (doc.leftMargin, doc.bottomMargin, doc.width, doc.height)
    footer = _Footer(layout.fonts.regular)
    doc.addPageTemplates([
        PageTemplate("cover", [Frame(*frame, id="cover", **frame_kw)], onPage=_paint_cover),
        PageTemplate("chapter", [Frame(*frame, id="text", **frame_kw)], onPage=footer.draw),
    ])
    story = _cover_story(book, styles)
    for index, chapter in enumerate(book.chapters):
        last = index == len(book.chapters) - 1
        story += _chapter_story(index, chapter, styles, (doc.width, doc.height), last)
    try:
        with _RENDER_LOCK:
            doc.build(story)
    except LayoutError as exc:
        # A layout that cannot be built fails the same way every time: not worth a retry.
        raise FatalAgentError("internal", f"the PDF could not be laid out: {exc}") from exc
    return out.getvalue()


def _check_coverage(book: Book, fonts: PdfFonts) -> None:
    texts = [book.title, book.byline or "", "The End"]
    texts += [t for chapter in book.chapters for t in (chapter.title, *chapter.paragraphs)]
    missing = sorted({ch for text in texts for ch in text
                      if ord(ch) not in fonts.covers and not ch.isspace() and ch.isprintable()})
    if fonts.covers and missing:
        shown = " ".join(f"{ch} (U+{ord(ch):04X})" for ch in missing[:8])
        raise FatalAgentError(
            "bad_request", f"the PDF font, {fonts.source}, cannot draw {len(missing)} of the "
            f"book's characters: {shown}{' ...' if len(missing) > 8 else ''}; set the "
            "publisher's font_path to a TrueType font that covers this script")


@dataclass(frozen=True, slots=True)
class _Styles:
    """The paragraph styles of one book (the cover title's size depends on its length)."""

    cover_title: ParagraphStyle
    byline: ParagraphStyle
    chapter_title: ParagraphStyle
    body: ParagraphStyle
    tight: ParagraphStyle  # the body, set closer, to keep a chapter on its page
    the_end: ParagraphStyle
    placeholder: ParagraphStyle

    @classmethod
    def build(cls, fonts: PdfFonts, title: str) -> _Styles:
        # Long titles get a smaller size so the cover picture keeps most of the page.
        size = 40 if len(title) <= 24 else 34 if len(title) <= 48 else 28 if len(title) <= 100 \
            else 22
        return cls(
            cover_title=ParagraphStyle("cover_title", fontName=fonts.bold, fontSize=size,
                                       leading=size * 1.2, alignment=TA_CENTER, textColor=ACCENT),
            byline=ParagraphStyle("byline", fontName=fonts.italic, fontSize=16, leading=21,
                                  alignment=TA_CENTER, textColor=MUTED),
            chapter_title=ParagraphStyle("chapter_title", fontName=fonts.bold, fontSize=24,
                                         leading=29, alignment=TA_CENTER, textColor=ACCENT,
                                         spaceAfter=6),
            # 16/24 pt: large, airy type for reading aloud and early readers alike.
            body=ParagraphStyle("body", fontName=fonts.regular, fontSize=16, leading=24,
                                alignment=TA_LEFT, textColor=INK, spaceAfter=10),
            tight=ParagraphStyle("tight", fontName=fonts.regular, fontSize=15, leading=20,
                                 alignment=TA_LEFT, textColor=INK, spaceAfter=6),
            the_end=ParagraphStyle("the_end", fontName=fonts.bold_italic, fontSize=22,
                                   leading=28, alignment=TA_CENTER, textColor=ACCENT,
                                   spaceBefore=30),
            placeholder=ParagraphStyle("placeholder", fontName=fonts.italic, fontSize=14,
                                       leading=18, alignment=TA_CENTER, textColor=MUTED),
        )


class _BookTemplate(BaseDocTemplate):  # type: ignore[misc]  # reportlab ships no types
    """Adds a PDF outline entry (a bookmark) for each chapter title as it is placed."""

    def afterFlowable(self, flowable: Any) -> None:
        mark = getattr(flowable, "storymesh_bookmark", None)
        if mark is not None:
            key, title = mark
            self.canv.bookmarkPage(key)
            self.canv.addOutlineEntry(title, key, level=0)


class _Footer:
    """Draws the page number at the bottom of every chapter page (never on the cover)."""

    def __init__(self, font: str) -> None:
        self.font = font

    def draw(self, canv: Any, doc: Any) -> None:
        width, _ = doc.pagesize
        canv.saveState()
        canv.setFont(self.font, 11)
        canv.setFillColor(MUTED)
        canv.drawCentredString(width / 2, MARGIN_BOTTOM / 2, f"\u2013 {doc.page} \u2013")
        canv.restoreState()


def _paint_cover(canv: Any, doc: Any) -> None:
    """Warm paper and a thin double border, so the cover reads as a cover."""
    width, height = doc.pagesize
    canv.saveState()
    canv.setFillColor(COVER_PAPER)
    canv.rect(0, 0, width, height, stroke=0, fill=1)
    canv.setStrokeColor(GOLD)
    for inset, line in ((18, 2.5), (24, 0.8)):
        canv.setLineWidth(line)
        canv.rect(inset, inset, width - 2 * inset, height - 2 * inset, stroke=1, fill=0)
    canv.restoreState()


def _cover_story(book: Book, styles: _Styles) -> list[Any]:
    byline = Paragraph(_markup(book.byline), styles.byline) if book.byline else None
    cover = _CoverPage(Paragraph(_markup(book.title), styles.cover_title), byline,
                       book.cover, _Placeholder(styles.placeholder))
    return [cover, NextPageTemplate("chapter"), PageBreak()]


def _chapter_story(index: int, chapter: Chapter, styles: _Styles,
                   frame: tuple[float, float], last: bool) -> list[Any]:
    """A chapter's flowables: title, rule, picture and text, cut into planned pages."""
    title = Paragraph(_markup(chapter.title), styles.chapter_title)
    title.storymesh_bookmark = (f"chapter-{index + 1}", chapter.title)
    plan = _plan_chapter(chapter, styles, title, frame, last)
    story: list[Any] = [] if index == 0 else [PageBreak()]
    story += [
        title,
        HRFlowable(width="25%", thickness=2, color=GOLD, spaceBefore=2, spaceAfter=TITLE_GAP - 2),
        _PictureBox(chapter.picture, plan.picture_h, _Placeholder(styles.placeholder)),
        Spacer(1, TITLE_GAP),
    ]
    for page, chunk in enumerate(plan.pages):
        story += ([PageBreak()] if page else []) + chunk
    return story


@dataclass(frozen=True, slots=True)
class _ChapterPlan:
    """How one chapter is laid out: its picture's height and its text, page by page."""

    picture_h: float
    pages: list[list[Any]]


def _body(chapter: Chapter, style: ParagraphStyle, styles: _Styles, last: bool) -> list[Any]:
    body: list[Any] = [Paragraph(_markup(text), style) for text in chapter.paragraphs]
    if last:
        body.append(Paragraph("The End", styles.the_end))
    return body


def _height(flowable: Any, width: float) -> float:
    """The room a flowable takes in a frame, its spacing included."""
    style = getattr(flowable, "style", None)
    space = (style.spaceBefore + style.spaceAfter) if style is not None else 0.0
    return float(flowable.wrap(width, 1e6)[1]) + space


def _plan_chapter(chapter: Chapter, styles: _Styles, title: Paragraph,
                  frame: tuple[float, float], last: bool) -> _ChapterPlan:
    """Fit the chapter on its first page if it is over by at most FIT_SHARE of a page (a
    smaller picture first, then tighter spacing); else spill it in a balanced split."""
    width, height = frame
    page = height - SLACK
    head = _height(title, width) + 3 * TITLE_GAP

    def picture(share: float) -> float:  # the height a picture of this share really takes
        return _picture_size(chapter.picture, width, height * share)[1]

    standard = picture(CHAPTER_PICTURE_SHARE)
    for style in (styles.body, styles.tight):
        body = _body(chapter, style, styles, last)
        text = sum(_height(f, width) for f in body)
        room = page - head - text
        if room >= picture(CHAPTER_PICTURE_MIN_SHARE):  # it all fits on one page
            grown = max(standard, picture(CHAPTER_PICTURE_MAX_SHARE))
            return _ChapterPlan(min(grown, room), [body])
        if head + standard + text - page > height * FIT_SHARE:
            break  # far too long to squeeze: it spills
    body = _body(chapter, styles.body, styles, last)
    return _ChapterPlan(standard, _balanced_pages(body, width, page, page - head - standard))


def _balanced_pages(body: list[Any], width: float, page: float, first: float
                    ) -> list[list[Any]]:
    """The text cut into pages: `first` points of it on the chapter's first page, then
    full pages; when the last would carry less than FIT_SHARE of a page, earlier pages
    give it some, so no page is a stray line."""
    text = sum(_height(f, width) for f in body)
    rest = text - first
    spill = max(1, -int(-rest // page))  # pages after the first
    tail = rest - (spill - 1) * page
    want = min(page * FIT_SHARE, text / (spill + 1))
    if tail < want:  # take what the last page lacks evenly from the pages before it
        take = (want - tail) / spill
        capacities = [first - take] + [page - take] * (spill - 1)
    else:
        capacities = [first] + [page] * (spill - 1)
    pages: list[list[Any]] = []
    queue = list(body)
    for capacity in capacities:
        chunk, queue = _take(queue, width, capacity)
        pages.append(chunk)
    pages.append(queue)
    return [chunk for chunk in pages if chunk]


def _take(queue: list[Any], width: float, capacity: float) -> tuple[list[Any], list[Any]]:
    """The flowables that fit `capacity` points (splitting a paragraph by lines), and the
    rest. A paragraph that cannot split stays whole on the next page."""
    chunk: list[Any] = []
    used = 0.0
    for i, flowable in enumerate(queue):
        need = _height(flowable, width)
        if used + need <= capacity:
            chunk.append(flowable)
            used += need
            continue
        parts = flowable.split(width, capacity - used) if capacity - used > 0 else []
        if len(parts) == 2:
            return [*chunk, parts[0]], [parts[1], *queue[i + 1:]]
        if len(parts) == 1:  # it fits but for its space after, which a page end drops
            return chunk + parts, queue[i + 1:]
        return chunk, queue[i:]
    return chunk, []


def _markup(text: str) -> str:
    """Plain text to reportlab paragraph markup: escape it, keep line breaks."""
    return escape(text).replace("\n", "<br/>")


def _fit(width: float, height: float, box_w: float, box_h: float) -> tuple[float, float]:
    """The largest size with the picture's aspect ratio that fits the box."""
    scale = min(box_w / width, box_h / height)
    return width * scale, height * scale


class _Placeholder:
    """Draws the 'picture missing' box in place of a missing or unreadable picture."""

    aspect: Final = (4.0, 3.0)

    def __init__(self, style: ParagraphStyle) -> None:
        self.style = style

    def draw(self, canv: Any, x: float, y: float, w: float, h: float) -> None:
        canv.saveState()
        canv.setFillColor(PLACEHOLDER_FILL)
        canv.setStrokeColor(PLACEHOLDER_LINE)
        canv.setLineWidth(2)
        canv.setDash(8, 5)
        canv.roundRect(x, y, w, h, radius=min(w, h) * 0.06, stroke=1, fill=1)
        canv.setDash()
        self._draw_icon(canv, x + w / 2, y + h * 0.58, min(w, h) * 0.22)
        label = Paragraph("picture missing", self.style)
        _, label_h = label.wrap(w, h)
        label.drawOn(canv, x, y + h * 0.3 - label_h / 2)
        canv.restoreState()

    @staticmethod
    def _draw_icon(canv: Any, cx: float, cy: float, size: float) -> None:
        """A tiny landscape (sun and two hills), the universal 'a picture goes here'."""
        canv.setFillColor(PLACEHOLDER_LINE)
        canv.setStrokeColor(PLACEHOLDER_LINE)
        canv.circle(cx + size * 0.45, cy + size * 0.35, size * 0.16, stroke=0, fill=1)
        path = canv.beginPath()
        path.moveTo(cx - size, cy - size * 0.5)
        path.lineTo(cx - size * 0.35, cy + size * 0.3)
        path.lineTo(cx + size * 0.05, cy - size * 0.15)
        path.lineTo(cx + size * 0.4, cy + size * 0.1)
        path.lineTo(cx + size, cy - size * 0.5)
        path.close()
        canv.drawPath(path, stroke=0, fill=1)


def _draw_picture(canv: Any, picture: Picture | None, placeholder: _Placeholder,
                  box: tuple[float, float, float, float]) -> None:
    x, y, w, h = box
    if picture is None:
        placeholder.draw(canv, x, y, w, h)
        return
    # mask="auto" keeps the transparency of RGBA pictures (as a soft mask).
    canv.drawImage(ImageReader(io.BytesIO(picture.png)), x, y, w, h, mask="auto")
    canv.saveState()
    canv.setStrokeColor(PICTURE_EDGE)
    canv.setLineWidth(1)
    canv.rect(x, y, w, h, stroke=1, fill=0)
    canv.restoreState()


def _picture_size(picture: Picture | None, box_w: float, box_h: float) -> tuple[float, float]:
    width, height = (picture.width, picture.height) if picture else _Placeholder.aspect
    return _fit(width, height, box_w, box_h)


class _PictureBox(Flowable):  # type: ignore[misc]  # reportlab ships no types
    """A chapter picture, centred, as large as fits the width and `max_height`."""

    def __init__(self, picture: Picture | None, max_height: float,
                 placeholder: _Placeholder) -> None:
        super().__init__()
        self.picture = picture
        self.max_height = max_height
        self.placeholder = placeholder
        self.hAlign = "CENTER"

    def wrap(self, avail_w: float, avail_h: float) -> tuple[float, float]:
        # Squeezed into the bottom of a page it would be a stamp: ask for the full size, so
        # the frame moves it to the next page instead.
        box_h = self.max_height if avail_h < self.max_height * 0.6 else min(self.max_height,
                                                                             avail_h)
        self.width, self.height = _picture_size(self.picture, avail_w, box_h)
        return self.width, self.height

    def draw(self) -> None:
        _draw_picture(self.canv, self.picture, self.placeholder, (0, 0, self.width, self.height))


class _CoverPage(Flowable):  # type: ignore[misc]  # reportlab ships no types
    """The whole cover in one flowable: title, the biggest picture that fits, byline."""

    GAP: Final = 28.0

    def __init__(self, title: Paragraph, byline: Paragraph | None, picture: Picture | None,
                 placeholder: _Placeholder) -> None:
        super().__init__()
        self.title, self.byline = title, byline
        self.picture, self.placeholder = picture, placeholder

    def wrap(self, avail_w: float, avail_h: float) -> tuple[float, float]:
        self.width, self.height = avail_w, avail_h - 1  # the page, less rounding slack
        return self.width, self.height

    def draw(self) -> None:
        w, h = self.width, self.height
        _, title_h = self.title.wrap(w, h)
        byline_h = self.byline.wrap(w, h)[1] + self.GAP if self.byline else 0.0
        box_h = max(h - title_h - byline_h - 2 * self.GAP, 72.0)
        pic_w, pic_h = _picture_size(self.picture, w * 0.92, box_h)
        group_h = title_h + self.GAP + pic_h + byline_h
        top = h - max(h - group_h, 0) * 0.4  # a little above centre looks centred
        self.title.drawOn(self.canv, 0, top - title_h)
        pic_y = top - title_h - self.GAP - pic_h
        _draw_picture(self.canv, self.picture, self.placeholder,
                      ((w - pic_w) / 2, pic_y, pic_w, pic_h))
        if self.byline is not None:
            self.byline.drawOn(self.canv, 0, pic_y - byline_h)


__all__ = ["PAGE_SIZES", "PdfFonts", "PdfLayout", "register_fonts", "render_pdf"]
