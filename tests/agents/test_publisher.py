"""The publisher agent: real PDF, HTML and EPUB bytes, read back with pypdf, zipfile and XML.

Pictures are built with Pillow in the test; nothing is mocked. Each test reads Given / When /
Then. `pdfimages -list` (poppler) is used as a second opinion when it is installed.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

import pytest
import reportlab
from PIL import Image, ImageDraw
from pypdf import PdfReader

from benchmarks.layout import MIN_CHARS, book_payload, pages_of
from benchmarks.plot_fidelity import PLOTS
from storymesh import vocabulary
from storymesh.agents.publisher import PublisherAgent
from storymesh.errors import ConfigError, FatalAgentError
from storymesh.runtime.agent import Final, Partial, Request

OPF_NS = {"opf": "http://www.idpf.org/2007/opf", "dc": "http://purl.org/dc/elements/1.1/"}
CHAPTER_TITLES = ("A Windy Morning", "Up, Up and Away", "Home Again")
TITLE = "Pip and the Red Kite"
BYLINE = "by Ada Lovelace"
SIZES = ((300, 200), (160, 160), (120, 200), (200, 150))  # cover, then one per chapter


# ---------------------------------------------------------------- helpers


def make_png(seed: int, size: tuple[int, int] = (160, 120)) -> bytes:
    """A small, distinct PNG: a coloured background with a sun, different for each seed."""
    image = Image.new("RGB", size, ((seed * 67) % 256, (seed * 131 + 80) % 256, 200))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w * 0.3, h * 0.3, w * 0.7, h * 0.7), fill=(255, 220, 90))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def story_text(chapter: int) -> str:
    return "\n\n".join(
        f"Part {chapter}.{n}: Pip ran through the tall grass, laughing at the wind. "
        "The kite danced above the trees like a bright red bird." for n in range(1, 4))


def sample_payload() -> dict[str, Any]:
    return {
        "title": TITLE,
        "byline": BYLINE,
        "cover_png": make_png(0, SIZES[0]),
        "chapters": [{"title": title, "text": story_text(i + 1), "png": make_png(i + 1, SIZES[i + 1])}
                     for i, title in enumerate(CHAPTER_TITLES)],
    }


def publish(agent: PublisherAgent, payload: dict[str, Any],
            request: Request | None = None) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Run one request through handle(); return the PARTIAL payloads and the publications."""
    replies = list(agent.handle(request or Request(id="req-1", payload=payload)))
    assert isinstance(replies[-1], Final)
    assert all(isinstance(reply, Partial) for reply in replies[:-1])
    publications = replies[-1].payload["publications"]
    assert all(isinstance(data, bytes) for data in publications.values())
    return [reply.payload for reply in replies[:-1]], publications


def pdf_reader(data: bytes) -> PdfReader:
    assert data.startswith(b"%PDF-")
    return PdfReader(io.BytesIO(data))


def page_texts(reader: PdfReader) -> list[str]:
    return [page.extract_text() for page in reader.pages]


def image_boxes(page: Any) -> list[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) of every image drawn on the page, from the matrix at each `Do`."""
    boxes: list[tuple[float, float, float, float]] = []

    def visit(op: bytes, args: Any, cm: list[float], tm: Any) -> None:
        if op == b"Do":
            boxes.append((cm[4], cm[5], cm[4] + cm[0], cm[5] + cm[3]))

    page.extract_text(visitor_operand_before=visit)
    return boxes


def fonts_of(reader: PdfReader) -> dict[str, bool]:
    """Base font name -> whether its font program is embedded, over all pages."""
    found: dict[str, bool] = {}
    for page in reader.pages:
        resources: Any = page["/Resources"]
        for ref in resources.get("/Font", {}).values():
            font: Any = ref.get_object()
            descriptor = font.get("/FontDescriptor")
            if descriptor is None and "/DescendantFonts" in font:
                descriptor = font["/DescendantFonts"][0].get_object().get("/FontDescriptor")
            descriptor = descriptor.get_object() if descriptor is not None else {}
            embedded = any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3"))
            found[str(font["/BaseFont"])] = embedded
    return found


def epub_parts(data: bytes) -> tuple[zipfile.ZipFile, ElementTree.Element, str]:
    """The zip, the parsed OPF and the OPF's folder (hrefs are relative to it)."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    container = ElementTree.fromstring(archive.read("META-INF/container.xml"))
    rootfile = container.find(".//{urn:oasis:names:tc:opendocument:xmlns:container}rootfile")
    assert rootfile is not None
    opf_path = rootfile.attrib["full-path"]
    return archive, ElementTree.fromstring(archive.read(opf_path)), os.path.dirname(opf_path)


def decoded_data_uris(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)",
                                                    html)]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def agent() -> PublisherAgent:
    publisher = PublisherAgent()
    publisher.setup()
    return publisher


@pytest.fixture(scope="module")
def sample(agent: PublisherAgent) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    return publish(agent, sample_payload())


# ---------------------------------------------------------------- the agent


def test_setup_announces_reportlab_backend() -> None:
    # Given a publisher with options
    publisher = PublisherAgent(formats=("pdf",), page_size="square")
    # When it is set up
    info = publisher.setup()
    # Then it announces its backend and options
    assert publisher.service == "story.publisher"
    assert info.backend == "reportlab"
    assert info.as_meta()["page_size"] == "square"
    assert info.as_meta()["formats"] == "pdf"


def test_one_partial_per_format_then_final_with_every_format(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given a request with no formats, When it is published
    partials, publications = sample
    # Then all three default formats are made, with a progress PARTIAL after each
    assert partials == [{"format": "pdf", "done": 1, "total": 3},
                        {"format": "html", "done": 2, "total": 3},
                        {"format": "epub", "done": 3, "total": 3}]
    assert sorted(publications) == ["epub", "html", "pdf"]


def test_requested_formats_are_deduplicated_and_keep_their_order(agent: PublisherAgent) -> None:
    # Given a request naming epub, pdf, epub
    payload = sample_payload() | {"formats": ["epub", "pdf", "epub"]}
    # When it is published
    partials, publications = publish(agent, payload)
    # Then each is rendered once, in the order asked
    assert [p["format"] for p in partials] == ["epub", "pdf"]
    assert [p["total"] for p in partials] == [2, 2]
    assert sorted(publications) == ["epub", "pdf"]


def test_agent_default_formats_apply_when_request_names_none() -> None:
    # Given an agent configured for HTML only
    publisher = PublisherAgent(formats=("html",))
    # When a request without formats arrives (and setup() was skipped, as a library user may)
    partials, publications = publish(publisher, sample_payload())
    # Then only HTML is made
    assert partials == [{"format": "html", "done": 1, "total": 1}]
    assert list(publications) == ["html"]


def test_same_book_gives_same_bytes(agent: PublisherAgent,
                                    sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given a book already published once
    _, first = sample
    # When the same request is published again
    _, second = publish(agent, sample_payload())
    # Then every format is byte-identical (caching and idempotent retries rely on it)
    assert second == first


def test_cancelled_request_stops_before_rendering(agent: PublisherAgent) -> None:
    # Given a request whose cancel flag is set
    request = Request(id="req-c", payload=sample_payload())
    request.cancel.set()
    # When it is handled, Then it fails as cancelled with no PARTIAL sent
    replies = agent.handle(request)
    with pytest.raises(FatalAgentError) as caught:
        next(replies)
    assert caught.value.code == "cancelled"


# ---------------------------------------------------------------- PDF


def test_pdf_has_cover_then_a_page_per_chapter_with_titles_in_order(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given the sample book's PDF
    reader = pdf_reader(sample[1]["pdf"])
    texts = page_texts(reader)
    # Then the cover shows the title and byline, and each chapter starts on a later page
    assert len(reader.pages) >= 1 + len(CHAPTER_TITLES)
    assert TITLE in texts[0]
    assert BYLINE in texts[0]
    first_pages = [next(i for i, text in enumerate(texts) if title in text)
                   for title in CHAPTER_TITLES]
    assert first_pages[0] == 1
    assert first_pages == sorted(set(first_pages))
    assert "The End" in texts[-1]
    assert all(f"Part {c}.{n}" in "".join(texts) for c in (1, 2, 3) for n in (1, 2, 3))


def test_pdf_metadata_and_outline(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given the sample book's PDF
    reader = pdf_reader(sample[1]["pdf"])
    # Then its metadata carries the title, the byline and the language
    assert reader.metadata is not None
    assert reader.metadata.title == TITLE
    assert reader.metadata.author == BYLINE
    root: Any = reader.trailer["/Root"]
    assert root["/Lang"] == "en"
    # And its outline (bookmarks) lists the chapters
    outline: list[Any] = list(reader.outline)
    assert [entry.title for entry in outline] == list(CHAPTER_TITLES)


def test_pdf_fonts_are_all_embedded_truetype(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given the sample book's PDF, Then every font it uses is DejaVu Sans, embedded
    fonts = fonts_of(pdf_reader(sample[1]["pdf"]))
    assert fonts, "the PDF uses no font at all"
    assert all(fonts.values()), f"not embedded: {[n for n, e in fonts.items() if not e]}"
    assert all("DejaVuSans" in name for name in fonts)


def test_pdf_prints_accented_latin_greek_and_cyrillic(agent: PublisherAgent) -> None:
    # Given a book in French, Greek and Russian
    texts = ("Élodie et le château où l'hiver dort, garçon", "Η μικρή χελώνα ήθελε να τρέξει",  # noqa: RUF001 - Greek text on purpose
             "Маленькая черепаха хотела бежать")
    payload = sample_payload() | {"formats": ["pdf"], "title": "Ça, Ψ, Ж", "chapters": [
        {"title": f"Chapitre {i}", "text": text, "png": make_png(i)}
        for i, text in enumerate(texts)]}
    # When it is published with the default font
    _, publications = publish(agent, payload)
    # Then every text reads back from the PDF as it was written
    printed = " ".join(page_texts(pdf_reader(publications["pdf"])))
    assert all(text in printed for text in texts)
    assert "Ça, Ψ, Ж" in printed


def test_text_the_font_cannot_draw_is_a_clear_error_naming_font_path(
        agent: PublisherAgent) -> None:
    # Given a chapter in Japanese, which DejaVu Sans does not cover
    payload = sample_payload() | {"formats": ["pdf"], "chapters": [
        {"title": "亀の夢", "text": "小さな亀は走りたかった。", "png": make_png(1)}]}
    # When it is published / Then it is refused, naming the option that fixes it
    with pytest.raises(FatalAgentError, match="font_path") as caught:
        publish(agent, payload)
    assert caught.value.code == "bad_request"
    assert "U+304B" in str(caught.value)


def test_page_numbers_on_chapter_pages_but_not_the_cover(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given the sample book's PDF
    texts = page_texts(pdf_reader(sample[1]["pdf"]))
    # Then pages 2.. carry their number in the footer and the cover carries none
    assert not re.search(r"\u2013 \d+ \u2013", texts[0])
    for number, text in enumerate(texts[1:], start=2):
        assert f"\u2013 {number} \u2013" in text


def test_pdf_embeds_each_picture_once_scaled_on_the_page_keeping_aspect(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given the sample book's PDF (a cover and three chapter pictures of different shapes)
    reader = pdf_reader(sample[1]["pdf"])
    boxes = [box for page in reader.pages for box in image_boxes(page)]
    # Then each picture is drawn once, inside the page, with its own aspect ratio
    assert len(boxes) == len(SIZES)
    assert len(image_boxes(reader.pages[0])) == 1
    page_w, page_h = float(reader.pages[0].mediabox.width), float(reader.pages[0].mediabox.height)
    for (x0, y0, x1, y1), (w, h) in zip(boxes, SIZES, strict=True):
        assert 0 <= x0 < x1 <= page_w
        assert 0 <= y0 < y1 <= page_h
        assert (x1 - x0) / (y1 - y0) == pytest.approx(w / h, rel=0.01)
        assert (x0 + x1) / 2 == pytest.approx(page_w / 2, abs=1)  # centred
        assert x1 - x0 > page_w * 0.3  # scaled up to a real picture, not a thumbnail


def test_pdf_images_keep_their_full_resolution(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]], tmp_path: Any) -> None:
    # Given the sample book's PDF
    data = sample[1]["pdf"]
    # When its image objects are listed (pypdf; and poppler's pdfimages too where installed)
    reader = pdf_reader(data)
    sizes = [image.image.size for page in reader.pages for image in page.images
             if image.image is not None]
    # Then there is one per picture, at the pixel size it was given
    assert sizes == list(SIZES)
    if shutil.which("pdfimages"):  # CI installs poppler-utils: a second, independent reader
        path = tmp_path / "book.pdf"
        path.write_bytes(data)
        rows = subprocess.run(["pdfimages", "-list", str(path)], capture_output=True, text=True,
                              check=True, timeout=30).stdout.splitlines()[2:]
        assert [(int(row.split()[3]), int(row.split()[4])) for row in rows] == list(SIZES)


def test_long_chapter_flows_over_many_pages_without_losing_text(agent: PublisherAgent) -> None:
    # Given one chapter of about 8,000 words in 40 numbered paragraphs
    words = " ".join(["the little boat drifted slowly down the silver river"] * 23)
    text = "\n\n".join(f"Marker{n:02d} {words}" for n in range(40))
    assert len(text.split()) >= 8000
    payload = sample_payload() | {"formats": ["pdf"],
                                  "chapters": [{"title": "The Long River", "text": text,
                                                "png": make_png(5)}]}
    # When it is published
    _, publications = publish(agent, payload)
    # Then it fills many pages, every paragraph appears in order, and the book ends
    texts = page_texts(pdf_reader(publications["pdf"]))
    assert len(texts) >= 15
    pages = [next(i for i, t in enumerate(texts) if f"Marker{n:02d}" in t) for n in range(40)]
    assert pages == sorted(pages)
    assert pages[-1] > pages[0] + 10
    assert "The End" in texts[-1]


def test_missing_and_garbage_pictures_become_placeholders(agent: PublisherAgent) -> None:
    # Given no cover, and chapters whose pictures are garbage, truncated, absent and fine
    good = make_png(4)
    chapters = [
        {"title": "Garbage", "text": "One.", "png": b"this is not a png"},
        {"title": "Truncated", "text": "Two.", "png": make_png(2)[:60]},
        {"title": "Absent", "text": "Three."},
        {"title": "Fine", "text": "Four.", "png": good},
    ]
    payload = {"title": "Holes", "byline": "", "cover_png": None, "chapters": chapters}
    # When it is published
    _, publications = publish(agent, payload)
    # Then the PDF is valid, draws placeholders, and embeds only the good picture
    reader = pdf_reader(publications["pdf"])
    texts = page_texts(reader)
    assert sum("picture missing" in text for text in texts) == 4  # cover + three chapters
    assert sum(len(image_boxes(page)) for page in reader.pages) == 1
    # And the HTML and EPUB carry placeholders and only the good picture too
    html = publications["html"].decode("utf-8")
    assert decoded_data_uris(html) == [good]
    assert html.count(">picture missing<") == 4
    archive, opf, _ = epub_parts(publications["epub"])
    images = [i for i in opf.iterfind(".//opf:manifest/opf:item", OPF_NS)
              if i.attrib["media-type"].startswith("image/")]
    assert len(images) == 1
    assert archive.testzip() is None


def test_markup_in_story_text_is_printed_not_interpreted_in_pdf(agent: PublisherAgent) -> None:
    # Given a title and text full of reportlab/HTML markup and ampersands
    payload = sample_payload() | {"title": "<b>Bold</b> & <i>Brave</i>", "formats": ["pdf"]}
    payload["chapters"][0]["text"] = "Tom & Jerry <font size=40>shout</font>\nline two"
    # When it is published
    _, publications = publish(agent, payload)
    # Then the PDF shows the characters literally
    texts = [" ".join(text.split()) for text in page_texts(pdf_reader(publications["pdf"]))]
    assert "<b>Bold</b> & <i>Brave</i>" in texts[0]
    assert "Tom & Jerry <font size=40>shout</font> line two" in texts[1]


@pytest.mark.parametrize(("page_size", "expected"),
                         [("letter", (612, 792)), ("square", (612, 612)), ("a4", (595, 842))])
def test_page_size_option(page_size: str, expected: tuple[int, int]) -> None:
    # Given a publisher set to a page size
    publisher = PublisherAgent(formats=("pdf",), page_size=page_size)
    publisher.setup()
    # When a book is published
    _, publications = publish(publisher, sample_payload())
    # Then every page has that size
    reader = pdf_reader(publications["pdf"])
    assert {(round(float(p.mediabox.width)), round(float(p.mediabox.height)))
            for p in reader.pages} == {expected}


def test_font_path_option_embeds_that_font() -> None:
    # Given a publisher told to use another TrueType file (Vera Oblique, shipped by reportlab)
    font = os.path.join(os.path.dirname(reportlab.__file__), "fonts", "VeraIt.ttf")
    publisher = PublisherAgent(formats=("pdf",), font_path=font)
    publisher.setup()
    # When a book is published
    _, publications = publish(publisher, sample_payload())
    # Then that font, and only it, is embedded
    fonts = fonts_of(pdf_reader(publications["pdf"]))
    assert fonts
    assert all(fonts.values())
    assert all(name.endswith("BitstreamVeraSans-Oblique") for name in fonts)


# ---------------------------------------------------------------- HTML


def test_html_is_self_contained_with_every_picture_inlined(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given the sample book's HTML
    html = sample[1]["html"].decode("utf-8")
    payload = sample_payload()
    # Then each picture is inlined once, byte for byte, cover first
    expected = [payload["cover_png"]] + [c["png"] for c in payload["chapters"]]
    assert decoded_data_uris(html) == expected
    assert html.count("data:image/png;base64,") == 4
    # And it is a UTF-8 HTML5 page with a language, every chapter and no outside reference
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in html
    assert '<meta charset="utf-8">' in html
    assert all(f"<h2>{title}</h2>" in html for title in CHAPTER_TITLES)
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)
    assert "The End" in html


def test_html_escapes_markup_and_keeps_unicode(agent: PublisherAgent) -> None:
    # Given a title and texts with a script tag, quotes and non-ASCII letters
    payload = sample_payload() | {"title": '<script>alert("x")</script> Zoë ☀',
                                  "byline": 'by "Q" & <b>co</b>', "formats": ["html"]}
    payload["chapters"][1]["title"] = "<img src=x onerror=alert(1)>"
    payload["chapters"][2]["text"] = "a < b & c > d"
    # When it is published
    _, publications = publish(agent, payload)
    html = publications["html"].decode("utf-8")
    # Then no markup from the story gets through, and the letters survive
    assert "<script" not in html.lower()
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Zoë ☀" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "a &lt; b &amp; c &gt; d" in html
    assert "by &quot;Q&quot; &amp; &lt;b&gt;co&lt;/b&gt;" in html


def test_a_non_png_picture_is_converted_to_png(agent: PublisherAgent) -> None:
    # Given a cover sent as a JPEG
    jpeg = io.BytesIO()
    Image.new("RGB", (90, 60), (10, 120, 200)).save(jpeg, format="JPEG")
    payload = sample_payload() | {"cover_png": jpeg.getvalue(), "formats": ["html"]}
    # When it is published
    _, publications = publish(agent, payload)
    # Then the HTML inlines it as a real PNG of the same size
    cover = decoded_data_uris(publications["html"].decode("utf-8"))[0]
    with Image.open(io.BytesIO(cover)) as image:
        assert (image.format, image.size) == ("PNG", (90, 60))


# ---------------------------------------------------------------- EPUB


def test_epub_zip_has_mimetype_first_and_stored(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given the sample book's EPUB
    archive, _, _ = epub_parts(sample[1]["epub"])
    first = archive.infolist()[0]
    # Then it is a sound zip whose first entry is the uncompressed mimetype
    assert archive.testzip() is None
    assert first.filename == "mimetype"
    assert first.compress_type == zipfile.ZIP_STORED
    assert archive.read("mimetype") == b"application/epub+zip"
    assert sample[1]["epub"][30:58] == b"mimetypeapplication/epub+zip"  # readers sniff this


def test_epub_opf_lists_metadata_chapters_images_nav_and_spine(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given the sample book's EPUB
    archive, opf, folder = epub_parts(sample[1]["epub"])
    # Then the metadata names the book
    assert opf.findtext(".//dc:title", namespaces=OPF_NS) == TITLE
    assert opf.findtext(".//dc:creator", namespaces=OPF_NS) == BYLINE
    assert opf.findtext(".//dc:language", namespaces=OPF_NS) == "en"
    assert (opf.findtext(".//dc:identifier", namespaces=OPF_NS) or "").startswith("urn:uuid:")
    # And the manifest holds every chapter and picture, a nav document and an NCX
    items = {i.attrib["id"]: i.attrib for i in opf.iterfind(".//opf:manifest/opf:item", OPF_NS)}
    hrefs = {item["href"] for item in items.values()}
    assert {f"chapter-{n:02d}.xhtml" for n in (1, 2, 3)} <= hrefs
    assert {f"images/chapter-{n:02d}.png" for n in (1, 2, 3)} | {"images/cover.png"} <= hrefs
    assert any("nav" in item.get("properties", "") for item in items.values())
    assert any(item["media-type"] == "application/x-dtbncx+xml" for item in items.values())
    assert all(f"{folder}/{href}" in archive.namelist() for href in hrefs)
    # And the spine reads title page, contents, then the chapters in order
    spine = [ref.attrib["idref"] for ref in opf.iterfind(".//opf:spine/opf:itemref", OPF_NS)]
    assert [items[i]["href"] for i in spine if items[i]["href"].startswith("chapter")] == [
        f"chapter-{n:02d}.xhtml" for n in (1, 2, 3)]
    assert items[spine[0]]["href"] == "title.xhtml"


def test_epub_chapters_are_xhtml_with_their_title_and_picture(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given the sample book's EPUB
    archive, _, folder = epub_parts(sample[1]["epub"])
    payload = sample_payload()
    xhtml = "{http://www.w3.org/1999/xhtml}"
    for n, title in enumerate(CHAPTER_TITLES, start=1):
        # When each chapter document is parsed as XML
        doc = ElementTree.fromstring(archive.read(f"{folder}/chapter-{n:02d}.xhtml"))
        # Then it has the title, the text and an image pointing at the right picture
        assert doc.findtext(f".//{xhtml}h2") == title
        assert any(f"Part {n}.1" in (p.text or "") for p in doc.iter(f"{xhtml}p"))
        image = doc.find(f".//{xhtml}img")
        assert image is not None
        assert archive.read(f"{folder}/{image.attrib['src']}") == payload["chapters"][n - 1]["png"]


# ---------------------------------------------------------------- bad requests


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda payload: payload.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda payload: payload.__setitem__(key, value)


def _set_chapter(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda payload: payload["chapters"][0].__setitem__(key, value)


BAD_REQUESTS = [
    ("no title", _without("title"), "bad_request", "title"),
    ("blank title", _set("title", "  \n "), "bad_request", "title"),
    ("title not text", _set("title", 42), "bad_request", "title"),
    ("title too long", _set("title", "x" * (vocabulary.MAX_TITLE_CHARS + 1)), "too_large", "title"),
    ("no chapters", _without("chapters"), "bad_request", "chapters"),
    ("empty chapters", _set("chapters", []), "bad_request", "chapters"),
    ("chapters not a list", _set("chapters", "once upon a time"), "bad_request", "chapters"),
    ("chapter not a map", _set("chapters", ["once"]), "bad_request", "chapters[0]"),
    ("chapter without text", _set("chapters", [{"title": "t"}]), "bad_request",
     "chapters[0].text"),
    ("chapter text too long", _set_chapter("text", "a" * (vocabulary.MAX_CHAPTER_TEXT_CHARS + 1)),
     "too_large", "chapters[0].text"),
    ("too many chapters",
     _set("chapters", [{"title": "t", "text": "x"}] * (vocabulary.MAX_CHAPTERS + 1)),
     "too_large", "chapters"),
    ("unknown format", _set("formats", ["pdf", "docx"]), "bad_request", "docx"),
    ("empty formats", _set("formats", []), "bad_request", "formats"),
    ("formats not a list", _set("formats", "pdf"), "bad_request", "formats"),
    ("cover not bytes", _set("cover_png", "iVBORw0KGgo="), "bad_request", "cover_png"),
    ("picture not bytes", _set_chapter("png", 3), "bad_request", "chapters[0].png"),
    ("bad language", _set("language", "english please"), "bad_request", "language"),
]


@pytest.mark.parametrize(("change", "code", "names"), [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request_is_refused_with_a_clear_error(
        agent: PublisherAgent, change: Callable[[dict[str, Any]], None], code: str,
        names: str) -> None:
    # Given a sample request broken in one way
    payload = sample_payload()
    change(payload)
    # When it is handled
    replies = agent.handle(Request(id="bad", payload=payload))
    # Then it fails before any PARTIAL, with the right code and a message naming the field
    with pytest.raises(FatalAgentError) as caught:
        next(replies)
    assert caught.value.code == code
    assert names in caught.value.message


@pytest.mark.parametrize("options", [{"page_size": "A5"}, {"formats": ("pdf", "docx")},
                                     {"formats": ()}])
def test_bad_options_are_config_errors(options: dict[str, Any]) -> None:
    # Given options a publisher cannot honour, When it is built, Then ConfigError says which
    with pytest.raises(ConfigError, match=r"page_size|formats"):
        PublisherAgent(**options)


def test_missing_font_file_fails_setup_naming_font_path(tmp_path: Any) -> None:
    # Given a font path that does not exist, and one that is not a font
    not_a_font = tmp_path / "font.ttf"
    not_a_font.write_bytes(b"hello")
    for path in (str(tmp_path / "missing.ttf"), str(not_a_font)):
        # When the publisher is set up, Then it refuses to start, naming the setting
        with pytest.raises(ConfigError, match="font_path"):
            PublisherAgent(font_path=path).setup()


# ---------------------------------------------------------------- picture-book layout

SENTENCE = "Pip ran through the tall grass, laughing at the wind as the kite danced above. "


def chapter_of(paragraphs: int, index: int = 1) -> dict[str, Any]:
    """A chapter of `paragraphs` five-line paragraphs and a 4:3 picture."""
    text = "\n\n".join(f"Para{index}.{k} " + SENTENCE * 3 for k in range(paragraphs))
    return {"title": f"Chapter {index}", "text": text, "png": make_png(index)}


def layout_of(agent: PublisherAgent, chapters: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Each page's text (page number left out) and how many pictures it shows."""
    _, publications = publish(agent, sample_payload() | {"formats": ["pdf"],
                                                         "chapters": chapters})
    reader = pdf_reader(publications["pdf"])
    return [(re.sub(r"\u2013 \d+ \u2013", "", page.extract_text()).strip(), len(page.images))
            for page in reader.pages]


def test_a_chapter_a_little_over_its_page_is_fitted_on_it(agent: PublisherAgent) -> None:
    # Given chapters that overflow a page with a standard picture by five and eight lines
    chapters = [chapter_of(3, 1), chapter_of(3, 2)]  # (the last one ends with "The End")
    # When the book is published
    pages = layout_of(agent, chapters)
    # Then each chapter keeps to its one page, picture and all of its text
    assert len(pages) == 1 + len(chapters)
    for (text, pictures), index in zip(pages[1:], (1, 2), strict=True):
        assert pictures == 1
        assert f"Chapter {index}" in text
        assert all(f"Para{index}.{k}" in text for k in range(3))


def test_a_long_chapter_spills_in_a_balanced_split(agent: PublisherAgent) -> None:
    # Given chapters that run one, two and four pages past their first page
    pages = layout_of(agent, [chapter_of(6, 1), chapter_of(9, 2), chapter_of(25, 3)])
    # Then every page after the cover shows a picture or at least a third of a page of
    # text (a five-line paragraph is about 250 characters): no stray lines
    for text, pictures in pages[1:-1]:
        assert pictures == 1 or len(text) >= 400, text
    # And each chapter starts with its title, picture and first paragraph on one page
    for index in (1, 2, 3):
        first = next((text, n) for text, n in pages if f"Chapter {index}" in text)
        assert first[1] == 1
        assert f"Para{index}.0" in first[0]


def test_embedded_books_have_no_short_pages_without_a_picture(agent: PublisherAgent) -> None:
    # Given a sample of books the embedded storyteller and painter make, one per age band,
    # at every length (the full set is benchmarks/layout.py)
    shapes = ((3, "2-4", 0), (6, "4-7", 1), (10, "8-12", 2), (6, "13-18", 3))
    for chapters, age, plot in shapes:
        payload = book_payload(PLOTS[plot * 7], chapters, age, seed=plot)
        # When each is published
        _, publications = publish(agent, payload)
        pages = pages_of(publications["pdf"])
        # Then no page but the last holds less than 200 characters without a picture
        assert all(page.images or len(page.text.strip()) >= MIN_CHARS for page in pages[1:-1])
        # And no page ends with a chapter title
        titles = [str(c["title"]) for c in payload["chapters"]]  # type: ignore[attr-defined]
        assert not any(page.text.strip().endswith(title) for page in pages for title in titles)


def test_html_and_epub_keep_each_chapters_picture_with_its_title_and_text(
        sample: tuple[list[dict[str, Any]], dict[str, bytes]]) -> None:
    # Given the sample book's HTML and EPUB
    html = sample[1]["html"].decode("utf-8")
    archive, _, _ = epub_parts(sample[1]["epub"])
    css = next(archive.read(n).decode() for n in archive.namelist() if n.endswith(".css"))
    # Then the picture follows its title and comes before the first paragraph
    assert re.search(r"<h2>[^<]*</h2>\n<figure>.*?</figure>\n<p>", html)
    # And the stylesheets keep the title, the picture and the first paragraph together
    assert re.search(r"h2 \{[^}]*break-after: avoid", html)
    assert re.search(r"figure \{[^}]*break-inside: avoid[^}]*break-after: avoid", html)
    assert re.search(r"h2 \{[^}]*break-after: avoid", css)
    assert re.search(r"div\.picture \{[^}]*break-inside: avoid[^}]*break-after: avoid", css)


def test_the_publisher_daemon_takes_its_defaults_from_its_config_table(tmp_path: Any) -> None:
    from storymesh import settings as settings_mod
    from storymesh.agents.registry import build_agent

    # Given a config file whose [publisher] table sets the formats and the page
    config = tmp_path / "storymesh.toml"
    config.write_text('[publisher]\nformats = "html,pdf"\npage_size = "square"\n')
    # When the daemon's agent is built from it
    agent = build_agent("publisher", settings_mod.load(config, env={}))
    # Then the agent has them
    assert isinstance(agent, PublisherAgent)
    assert (agent.formats, agent.page_size, agent.font_path) == (("html", "pdf"), "square", None)
    # and a format it cannot make is a config error naming the key
    config.write_text('[publisher]\nformats = "pdf,docx"\n')
    with pytest.raises(ConfigError, match="formats"):
        settings_mod.load(config, env={})
