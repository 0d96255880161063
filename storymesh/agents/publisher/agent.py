"""The publisher agent (`story.publisher`): a finished story in, PDF / HTML / EPUB bytes out.

Owns the service side only: options, setup (fonts and renderers, loaded once), request
parsing through `model.parse_request`, one PARTIAL per rendered format and the FINAL with
the publications. Layout lives in the `pdf`, `html` and `epub` modules.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar

from storymesh import vocabulary
from storymesh.agents.publisher.model import Book, parse_request
from storymesh.errors import ConfigError, FatalAgentError
from storymesh.runtime.agent import Agent, AgentInfo, Final, Partial, Reply, Request
from storymesh.runtime.metrics import MetricSpec

log = logging.getLogger(__name__)

PAGE_SIZE_NAMES = ("A4", "letter", "square")

Renderer = Callable[[Book], bytes]

# Metrics (served with `[publisher] metrics_bind`).
BOOKS = MetricSpec("storymesh_publisher_books_total", "counter", "books rendered, by format",
                   ("format",))
PAGES = MetricSpec("storymesh_publisher_pages_total", "counter", "pages of the PDFs rendered")
# The page tree's root of a PDF: a dictionary with `/Type /Pages` and the page `/Count`.
_PAGES_DICT = re.compile(rb"<<((?:(?!>>).)*?/Type\s*/Pages\b(?:(?!>>).)*)>>", re.DOTALL)
_COUNT = re.compile(rb"/Count\s+(\d+)")


class PublisherAgent(Agent):
    """Lays out a picture book in the requested formats (reportlab, HTML, ebooklib)."""

    service: ClassVar[str] = "story.publisher"
    metric_specs = (BOOKS, PAGES)

    def __init__(self, *, formats: Sequence[str] = vocabulary.FORMATS, page_size: str = "A4",
                 font_path: str | None = None) -> None:
        """`formats`: rendered when a request names none; `page_size`: A4, letter or square;
        `font_path`: a TrueType font to embed in PDFs (default: DejaVu Sans, shipped in the
        package: Latin with accents, Greek, Cyrillic). All three can be set in `[publisher]`.
        """
        self.formats = _check_formats(formats)
        self.page_size = _check_page_size(page_size)
        self.font_path = font_path
        self._renderers: dict[str, Renderer] | None = None

    def setup(self) -> AgentInfo:
        """Register the PDF fonts and load the renderers; ConfigError for a bad font_path."""
        try:
            from storymesh.agents.publisher import epub, html, pdf
        except ImportError as exc:  # reportlab / ebooklib are core dependencies
            raise FatalAgentError(
                "internal", f"the publisher needs {exc.name}: pip install storymesh") from exc
        fonts = pdf.register_fonts(self.font_path)
        layout = pdf.PdfLayout(page_size=self.page_size, fonts=fonts)
        self._renderers = {
            "pdf": lambda book: pdf.render_pdf(book, layout),
            "html": html.render_html,
            "epub": epub.render_epub,
        }
        for fmt in vocabulary.FORMATS:  # every format's series from the first scrape
            self.metrics.inc(BOOKS, 0, format=fmt)
        log.info("publisher ready: formats %s, page size %s, font %s",
                 ",".join(self.formats), self.page_size, fonts.source)
        return AgentInfo(backend="reportlab", extra={
            "formats": ",".join(self.formats), "page_size": self.page_size, "font": fonts.source})

    def handle(self, request: Request) -> Iterator[Reply]:
        """Render each requested format: a PARTIAL after each, then the FINAL with them all."""
        renderers = self._ready()
        job = parse_request(request.payload, self.formats)
        publications: dict[str, bytes] = {}
        for done, fmt in enumerate(job.formats, start=1):
            if request.cancel.is_set():
                raise FatalAgentError("cancelled", "the request was cancelled while publishing")
            started = time.monotonic()
            publications[fmt] = renderers[fmt](job.book)
            self.metrics.inc(BOOKS, format=fmt)
            if fmt == "pdf":
                self.metrics.inc(PAGES, pdf_pages(publications[fmt]))
            log.info("request %s: %s rendered, %s bytes in %.2f s", request.id, fmt,
                     len(publications[fmt]), time.monotonic() - started)
            yield Partial({"format": fmt, "done": done, "total": len(job.formats)})
        yield Final({"publications": publications})

    def teardown(self) -> None:
        """Nothing to release: fonts stay registered with reportlab for the process."""
        self._renderers = None

    def _ready(self) -> dict[str, Renderer]:
        """The renderers, setting up first for callers that skip setup() (library use)."""
        if self._renderers is None:
            self.setup()
        if self._renderers is None:
            raise FatalAgentError("internal", "the publisher's setup() loaded no renderers")
        return self._renderers


def pdf_pages(data: bytes) -> int:
    """Pages of a PDF, from its page tree's root (the largest `/Count` of a `/Pages`)."""
    counts = [int(m.group(1)) for tree in _PAGES_DICT.finditer(data)
              if (m := _COUNT.search(tree.group(1)))]
    return max(counts, default=0)


def _check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = formats.split(",")  # "pdf,html" from a config file or flag
    chosen = tuple(dict.fromkeys(f.strip() for f in formats))
    unknown = [f for f in chosen if f not in vocabulary.FORMATS]
    if unknown or not chosen:
        raise ConfigError(f"publisher formats: {','.join(unknown) or 'none given'} is not a "
                          f"list of {', '.join(vocabulary.FORMATS)}")
    return chosen


def _check_page_size(page_size: str) -> str:
    by_lower = {name.lower(): name for name in PAGE_SIZE_NAMES}
    if not isinstance(page_size, str) or page_size.lower() not in by_lower:
        raise ConfigError(f"publisher page_size: {page_size!r} is not one of "
                          f"{', '.join(PAGE_SIZE_NAMES)}")
    return by_lower[page_size.lower()]
