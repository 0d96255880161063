"""The browser tier: the gateway's web page in headless Chromium, in front of a real mesh.

Chromium is the Debian package (`make sysdeps` installs it), driven by Playwright for Python;
Playwright's own browser download is never used. Each test gets a real broker, real agents
(sleep-based ones with set costs, so chapters arrive while the story still runs, and the real
publisher, so the PDF is a PDF), the story service and a real gateway on uvicorn, all in
threads of this process on loopback. Every test in this folder is marked `browser`.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, sync_playwright

from storymesh.agents.registry import build_agent
from storymesh.gateway.keys import KeyRing
from storymesh.gateway.server import GatewayServer
from storymesh.runtime.agent import Agent
from storymesh.story.service import run_story_service
from testkit.mesh import Mesh
from testkit.sleepy import Costs, SleepyAuthor, SleepyIllustrator

HERE = Path(__file__).parent
# Tests run as root in a container: no sandbox, no /dev/shm, no GPU, nothing from the network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
DESKTOP: ViewportSize = {"width": 1200, "height": 900}
PHONE: ViewportSize = {"width": 375, "height": 740}
# A chapter or a picture takes this long: chapter 1 and its picture arrive well before the end.
COSTS = Costs(outline=0.2, chapter=0.6, picture=0.6, publish=0.0)
STORY_SERVICES = ("story.submit", "story.query", "story.watch")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


# Package scope: Playwright's sync API keeps an event loop running in the main thread while it
# is open, and later tests that start their own loop (asyncio.run) must not find it there.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "the browser tests need the Debian package chromium (make sysdeps)"
    launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(20_000)
    opened = context.new_page()
    yield opened
    context.close()


@dataclass
class Site:
    """A gateway in front of a mesh; `stops[role]` stops one agent."""

    mesh: Mesh
    gateway: GatewayServer
    stops: dict[str, threading.Event] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.gateway.url


AgentFactory = Callable[[Mesh], dict[str, Agent]]


def sleepy_agents(mesh: Mesh) -> dict[str, Agent]:
    """Sleep-based author and illustrator with COSTS, and the real publisher."""
    return {"author": SleepyAuthor(COSTS), "illustrator": SleepyIllustrator(COSTS),
            "publisher": build_agent("publisher", mesh.settings)}


def embedded_agents(mesh: Mesh) -> dict[str, Agent]:
    """The real agents on their embedded backends (a storyteller and a painter, no weights)."""
    return {role: build_agent(role, mesh.settings)
            for role in ("author", "illustrator", "publisher")}


@contextmanager
def open_site(tmp_path: Path, agents: AgentFactory = sleepy_agents, *,
              keys_file: Path | None = None) -> Iterator[Site]:
    """A mesh (broker, `agents`, the story service) and a gateway on a free loopback port."""
    with Mesh(journal=str(tmp_path / "journal.db")) as mesh:
        stops = {role: mesh.add_agent(agent) for role, agent in agents(mesh).items()}
        mesh.serve(run_story_service, mesh.settings.story_section(), mesh.stop,
                   context=mesh.context)
        mesh.wait_services(*STORY_SERVICES)
        gateway_flags: dict[str, Any] = {"gateway.http": "127.0.0.1:0",
                                         "gateway.submit_rate": 50.0}
        settings = mesh.peer_settings(**gateway_flags)
        keys = KeyRing(keys_file) if keys_file is not None else None
        with GatewayServer(settings, context=mesh.context, keys=keys) as gateway:
            yield Site(mesh, gateway, stops)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path) as opened:
        yield opened
