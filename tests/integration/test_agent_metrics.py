"""The agents' and the story service's Prometheus endpoints: a real broker, the real agents
(embedded backends) and the story service in threads, each serving /metrics on 127.0.0.1,
scraped over HTTP before and after a real three-chapter story; and the monitor reading the
same endpoints for its per-worker rates.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from storymesh.agents.author import AuthorAgent
from storymesh.agents.illustrator import IllustratorAgent
from storymesh.agents.publisher import PublisherAgent
from storymesh.ops.monitor import AgentScraper, Poller, render
from storymesh.runtime.agent import Agent
from storymesh.runtime.exporter import AgentExporter
from storymesh.runtime.worker import run_agent
from storymesh.story.api import StoryClient
from storymesh.story.service import run_story_service
from testkit.mesh import WAIT, Mesh, wait_for
from tests.integration.test_monitor import text_of

pytestmark = pytest.mark.timeout(120)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
CHAPTERS = 3


def scrape(address: str) -> Samples:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


@dataclass
class MetricsMesh:
    mesh: Mesh
    exporters: dict[str, AgentExporter]

    def address(self, name: str) -> str:
        address = self.exporters[name].address
        assert address is not None
        return address

    def scrape(self, name: str) -> Samples:
        return scrape(self.address(name))


def serve(mesh: Mesh, agent: Agent, exporter: AgentExporter) -> None:
    ready = threading.Event()
    mesh.serve(run_agent, agent, mesh.settings.peer_section(), stop=mesh.stop,
               context=mesh.context, ready=ready, metrics=exporter)
    wait_for(ready.is_set, WAIT, f"{agent.service} READY")


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsMesh]:
    """A mesh whose author, illustrator, publisher and story service serve metrics."""
    journal = Path(tmp_path_factory.mktemp("journal")) / "journal.db"
    exporters = {name: AgentExporter() for name in ("author", "illustrator", "publisher",
                                                    "story")}
    for exporter in exporters.values():
        exporter.serve("127.0.0.1:0")  # the OS picks a free port
    with Mesh(picture_size=128, step_timeout=60.0, journal=str(journal)) as mesh:
        serve(mesh, AuthorAgent(), exporters["author"])
        serve(mesh, IllustratorAgent(width=128, height=128), exporters["illustrator"])
        serve(mesh, PublisherAgent(), exporters["publisher"])
        mesh.serve(run_story_service, mesh.settings.story_section(), mesh.stop,
                   context=mesh.context, metrics=exporters["story"])
        mesh.wait_services("story.submit", "story.watch", "story.query")
        try:
            yield MetricsMesh(mesh, exporters)
        finally:
            mesh.stop_agents()
            for exporter in exporters.values():
                exporter.close()


def run_story(metered: MetricsMesh) -> dict[str, Any]:
    mesh = metered.mesh
    with StoryClient(mesh.endpoint, settings=mesh.settings.peer_section(), context=mesh.context,
                     timeout=60.0) as stories:
        corr = stories.submit("A brave mouse goes on an adventure to find the lost moon",
                              chapters=CHAPTERS, seed=11, formats=["pdf", "html"])
        outcome: dict[str, Any] = stories.wait(corr)
    assert outcome["status"] == "complete", outcome
    return outcome


def test_every_agent_serves_its_families_before_any_traffic(metered: MetricsMesh) -> None:
    # Given the agents serving metrics, before any story
    author = metered.scrape("author")
    illustrator = metered.scrape("illustrator")
    publisher = metered.scrape("publisher")
    story = metered.scrape("story")
    # Then each says what it loaded, its slots and its load time, with its service label
    for samples, service, backend in ((author, "story.author", "embedded"),
                                      (illustrator, "story.illustrator", "embedded"),
                                      (publisher, "story.publisher", "reportlab")):
        assert total(samples, "storymesh_agent_info", service=service, backend=backend) == 1
        assert total(samples, "storymesh_agent_slots", service=service) == 1
        assert total(samples, "storymesh_agent_busy_slots", service=service) == 0
        assert ("storymesh_agent_model_load_seconds", (("service", service),)) in samples
    # And the agents' own families are there at zero
    assert author[("storymesh_author_tokens_total", ())] == 0
    assert author[("storymesh_author_batch_size_count", ())] == 0
    assert illustrator[("storymesh_illustrator_images_total", ())] == 0
    assert {dict(ls)["format"] for n, ls in publisher if n == "storymesh_publisher_books_total"} \
        == {"pdf", "html", "epub"}
    # And the story service reports its three services and the journal
    assert total(story, "storymesh_agent_slots", service="story.watch") >= 1
    assert ("storymesh_journal_bytes", ()) in story
    assert total(story, "storymesh_stories", status="running") == 0
    # And no CUDA series on a machine that never initialised CUDA
    assert not any(n.startswith("storymesh_gpu_") for n, _ in author)


def test_a_story_moves_every_agents_series(metered: MetricsMesh) -> None:
    # Given the counters before, and the monitor's first look (a fake clock: 10 s apart)
    now = [1000.0]
    poller = Poller(metered.mesh.settings, clock=lambda: now[0], context=metered.mesh.context,
                    scraper=AgentScraper())
    before = {name: metered.scrape(name) for name in metered.exporters}
    first = poller.poll()
    assert first.up
    # When a three-chapter story runs to its book
    run_story(metered)

    def settled() -> dict[str, Samples] | None:
        # a runtime counts a request just after sending its FINAL: wait for the last ones
        now_seen = {name: metered.scrape(name) for name in metered.exporters}
        done = total(now_seen["illustrator"], "storymesh_agent_requests_total") - total(
            before["illustrator"], "storymesh_agent_requests_total")
        return now_seen if done >= 4 else None

    after = wait_for(settled, what="the illustrator's last request counted")

    def moved(name: str, metric: str, **labels: str) -> float:
        return total(after[name], metric, **labels) - total(before[name], metric, **labels)

    # Then the author answered 4 requests (the outline and three chapters), all ok
    assert moved("author", "storymesh_agent_requests_total", service="story.author") == 4
    assert moved("author", "storymesh_agent_requests_total", op="chapter", outcome="ok") == 3
    assert moved("author", "storymesh_agent_requests_total", op="outline", outcome="ok") == 1
    assert moved("author", "storymesh_agent_request_seconds_count", op="chapter") == 3
    assert moved("author", "storymesh_author_tokens_total") > 100  # three chapters of words
    assert moved("author", "storymesh_author_batch_size_count") == 4
    assert total(after["author"], "storymesh_agent_busy_slots") == 0
    # And the illustrator painted 4 pictures (the cover and one per chapter), no steps
    assert moved("illustrator", "storymesh_illustrator_images_total") == 4
    assert moved("illustrator", "storymesh_agent_requests_total", outcome="ok") == 4
    assert moved("illustrator", "storymesh_illustrator_steps_total") == 0
    # And the publisher made one PDF (with its pages) and one HTML book
    assert moved("publisher", "storymesh_publisher_books_total", format="pdf") == 1
    assert moved("publisher", "storymesh_publisher_books_total", format="html") == 1
    assert moved("publisher", "storymesh_publisher_books_total", format="epub") == 0
    assert moved("publisher", "storymesh_publisher_pages_total") >= 1 + CHAPTERS
    # And the story service timed each step and the story, and counts it complete
    story = after["story"]
    assert moved("story", "storymesh_story_step_seconds_count", step="outline") == 1
    assert moved("story", "storymesh_story_step_seconds_count", step="chapter") == CHAPTERS
    assert moved("story", "storymesh_story_step_seconds_count", step="picture") == CHAPTERS
    assert moved("story", "storymesh_story_step_seconds_count", step="cover") == 1
    assert moved("story", "storymesh_story_step_seconds_count", step="publish") == 1
    assert moved("story", "storymesh_story_seconds_count") == 1
    assert moved("story", "storymesh_stories", status="complete") == 1
    assert total(story, "storymesh_journal_bytes") > total(before["story"],
                                                           "storymesh_journal_bytes")
    assert moved("story", "storymesh_agent_requests_total", service="story.submit") == 1
    # And the monitor, a minute's worth later, shows each agent's rate from its metrics
    now[0] += 10.0
    second = poller.poll()
    poller.close()
    images = second.agents[metered.address("illustrator")]["images_per_min"]
    assert images == pytest.approx(4 * 60 / 10.0)
    assert second.agents[metered.address("author")]["tokens_per_s"] > 10
    text = text_of(render(second))
    assert "img/min" in text
    assert "tok/s" in text


def test_ready_metadata_names_the_metrics_address(metered: MetricsMesh) -> None:
    # Given the mesh's snapshot
    snap = metered.mesh.snapshot()
    # Then every worker of a metered agent names its agent's metrics address
    by_service = {w["service"]: w["meta"].get("metrics") for w in snap["workers"]}
    assert by_service["story.author"] == metered.address("author")
    assert by_service["story.illustrator"] == metered.address("illustrator")
    assert by_service["story.watch"] == metered.address("story")
