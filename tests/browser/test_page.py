"""The gateway's web page in headless Chromium: a plot becomes a book before the reader's eyes,
mistakes are told in plain words, the page works with API keys, by keyboard and on a phone.

`STORYMESH_SCREENSHOTS=docs/img pytest tests/browser -k screenshot` writes the screenshot of
docs/http.md (docs/img/gateway.png); without it the screenshot goes to the test's tmp dir.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from PIL import Image
from playwright.sync_api import Locator, Page, expect

from storymesh.gateway.keys import add_key
from tests.browser.conftest import DESKTOP, PHONE, Site, embedded_agents, open_site

PLOT = "A brave mouse goes on an adventure to find the lost moon"
BOOK_TIMEOUT = 60_000  # ms: the whole book on a busy two-core machine


def write(page: Page, plot: str = PLOT, themes: str = "courage, friendship") -> None:
    page.get_by_label("Plot").fill(plot)
    page.get_by_label("Themes").fill(themes)
    page.get_by_role("button", name="Write the book").click()


def first_chapter(page: Page) -> Locator:
    return page.locator("#chapters > li").first


def picture_loaded(page: Page, selector: str) -> None:
    """Wait until the <img> at `selector` has decoded a real picture."""
    page.wait_for_function(
        "s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
        arg=selector)


def pdf_of(page: Page) -> bytes:
    """Follow the PDF link as the browser would (cookies and all) and return the body."""
    link = page.get_by_role("link", name="PDF", exact=True)
    expect(link).to_be_visible(timeout=BOOK_TIMEOUT)
    href = link.get_attribute("href")
    assert href
    answer = page.request.get(page.url.split("#")[0].rstrip("/") + href
                              if href.startswith("/") else href)
    assert answer.status == 200, answer.text()
    assert answer.headers["content-type"] == "application/pdf"
    assert re.search(r'filename=".+\.pdf"', answer.headers["content-disposition"])
    return answer.body()


def test_a_plot_becomes_a_book_while_the_reader_watches(page: Page, site: Site) -> None:
    # Given the page of a gateway in front of a mesh
    page.goto(site.url)
    expect(page.get_by_text("The story mesh is ready.")).to_be_visible()
    expect(page.get_by_label("Plot")).to_have_count(1)

    # When a plot is typed into Plot and Write the book is pressed
    write(page)

    # Then the title, chapter 1's text and its picture appear while the story still runs
    expect(page.locator("#story-title")).to_have_text("The Sleepy Mouse")
    expect(first_chapter(page).locator(".chapter-text")).to_contain_text("This is chapter 1.")
    picture_loaded(page, "#chapters > li:first-child .picture img")
    still_running = page.evaluate(
        "() => !document.getElementById('story').classList.contains('is-complete')")
    assert still_running, "chapter 1 and its picture came only with the finished book"
    expect(page.get_by_role("link", name="PDF", exact=True)).to_be_hidden()

    # And the book completes: every chapter with its picture, the cover, full progress bars
    expect(page.locator("#story-state")).to_contain_text("The book is ready",
                                                         timeout=BOOK_TIMEOUT)
    expect(page.locator("#chapters > li.has-text.has-picture")).to_have_count(3)
    picture_loaded(page, "#cover-img")
    expect(page.locator("#bar-chapters-text")).to_have_text("3 of 3")
    expect(page.locator("#bar-pictures-text")).to_have_text("4 of 4")
    for name in ("PDF", "HTML", "EPUB"):
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()

    # And following PDF gets a PDF
    assert pdf_of(page).startswith(b"%PDF-")

    # And the recent list shows the book as ready
    expect(page.locator("#recent-list")).to_contain_text("The Sleepy Mouse")
    expect(page.locator("#recent-list .chip-complete")).to_have_text("ready")


def test_an_empty_plot_is_refused_in_plain_words(page: Page, site: Site) -> None:
    # Given the page
    page.goto(site.url)
    expect(page.locator("#recent-empty")).to_be_visible()

    # When Write the book is pressed with no plot, then with only spaces
    for plot in ("", "   "):
        write(page, plot=plot, themes="")

        # Then the page says what to do, marks the field, and sends nothing
        expect(page.get_by_role("alert")).to_have_text(
            "Please write a plot first: a sentence or two about what happens.")
        expect(page.get_by_label("Plot")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_label("Plot")).to_be_focused()
    assert page.locator("#story").is_hidden()
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#recent-empty")).to_have_text("No books yet.")

    # When a plot longer than the limit arrives (pasted past the field's maxlength)
    page.eval_on_selector("#plot", "el => { el.value = 'x'.repeat(4001); }")
    page.get_by_role("button", name="Write the book").click()

    # Then it is refused in plain words too
    expect(page.get_by_role("alert")).to_contain_text("The plot is too long")

    # And once a plot is typed the error goes away
    page.get_by_label("Plot").fill(PLOT)
    expect(page.get_by_role("alert")).to_be_hidden()


def test_no_author_running_is_said_in_plain_words(page: Page, site: Site) -> None:
    # Given a mesh whose author has stopped
    site.stops["author"].set()
    site.mesh.wait_services("story.author", present=False, timeout=10)

    # When the page loads and a plot is submitted
    page.goto(site.url)
    expect(page.locator("#mesh-state")).to_contain_text("Not running right now: author")
    write(page)

    # Then the page says that no author is running, and no story view opens
    expect(page.get_by_role("alert")).to_contain_text("No author is running right now")
    assert page.locator("#story").is_hidden()


def test_the_page_asks_for_the_key_once_and_signs_its_urls(page: Page, tmp_path: Path) -> None:
    # Given a gateway with API keys
    keys_file = tmp_path / "api-keys"
    secret = add_key(keys_file, "alice")
    with open_site(tmp_path, keys_file=keys_file) as site:
        # When the page loads, it asks for the key; a wrong key is refused in plain words
        page.goto(site.url)
        key_field = page.get_by_label("API key", exact=True)
        expect(key_field).to_be_focused()
        key_field.fill("not-the-key")
        page.get_by_role("button", name="Use this key").click()
        expect(page.locator("#key-error")).to_contain_text("not accepted")

        # When the right key is given, a book is written and read as before
        key_field.fill(secret)
        page.get_by_role("button", name="Use this key").click()
        expect(page.locator("#key-panel")).to_be_hidden()
        write(page)
        expect(page.locator("#story-state")).to_contain_text("The book is ready",
                                                             timeout=BOOK_TIMEOUT)
        picture_loaded(page, "#chapters > li:first-child .picture img")

        # Then the key stays in this tab's session storage only, and never in a URL
        assert page.evaluate("() => sessionStorage.getItem('storymesh.apiKey')") == secret
        assert page.evaluate("() => localStorage.length") == 0
        srcs = page.eval_on_selector_all("img[src]", "els => els.map(e => e.src)")
        links = page.eval_on_selector_all(".download", "els => els.map(e => e.href)")
        for url in srcs + links:
            assert "token=" in url
            assert secret not in url

        # And the PDF link works with no header at all: its token is enough
        assert pdf_of(page).startswith(b"%PDF-")

        # And a reload does not ask again
        page.reload()
        expect(page.locator("#recent-list")).to_contain_text("The Sleepy Mouse")
        assert page.locator("#key-panel").is_hidden()


def test_the_page_is_usable_by_keyboard_on_a_phone(page: Page, site: Site) -> None:
    # Given the page on a phone-width screen
    page.set_viewport_size(PHONE)
    page.goto(site.url)

    # When the plot field and the button are reached with Tab alone, and Enter pressed
    focused = ""
    for _ in range(5):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => document.activeElement.id")
        if focused == "plot":
            break
    assert focused == "plot"
    page.keyboard.type(PLOT)
    for _ in range(8):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "submit":
            break
    page.keyboard.press("Enter")

    # Then the story arrives, and nothing is wider than the screen
    expect(page.locator("#story-state")).to_contain_text("The book is ready",
                                                         timeout=BOOK_TIMEOUT)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px screen"
    box = page.locator("#chapters > li:first-child .chapter-text").bounding_box()
    assert box is not None
    assert box["width"] > PHONE["width"] * 0.7


def test_screenshot_of_a_book_from_the_embedded_agents(page: Page, tmp_path: Path) -> None:
    # Given a mesh of the real agents on their embedded backends
    with open_site(tmp_path, embedded_agents) as site:
        # When a book is written through the page
        page.goto(site.url)
        write(page, "A shy dragon learns to dance at the harvest festival")
        expect(page.locator("#story-state")).to_contain_text("The book is ready",
                                                             timeout=BOOK_TIMEOUT)
        picture_loaded(page, "#cover-img")
        for n in range(1, 4):
            picture_loaded(page, f"#chapters > li:nth-child({n}) .picture img")
        assert pdf_of(page).startswith(b"%PDF-")

        # Then a screenshot of it is saved (for docs/http.md when asked)
        page.evaluate("() => window.scrollTo(0, 0)")
        shot = tmp_path / "gateway.png"
        page.screenshot(path=str(shot), full_page=True, animations="disabled")
        with Image.open(shot) as image:
            assert image.width == DESKTOP["width"]
            assert image.height > DESKTOP["height"]
            docs = os.environ.get("STORYMESH_SCREENSHOTS")
            if docs:  # 256 colours: a quarter of the bytes, the same picture to the eye
                Path(docs).mkdir(parents=True, exist_ok=True)
                image.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(
                    Path(docs) / "gateway.png", optimize=True)
