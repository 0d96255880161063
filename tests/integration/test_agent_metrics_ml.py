"""The transformers author's and the diffusers illustrator's own metrics, on the tiny random
models (testkit/tiny_models.py), each agent behind a real broker serving /metrics on
127.0.0.1, scraped over HTTP after real requests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from storymesh.agents.author import AuthorAgent
from storymesh.agents.illustrator import IllustratorAgent
from storymesh.runtime.agent import Agent
from storymesh.runtime.exporter import AgentExporter
from storymesh.runtime.worker import run_agent
from testkit.mesh import Mesh, wait_for
from tests.integration.test_agent_metrics import Samples, scrape, total

pytestmark = [pytest.mark.ml, pytest.mark.timeout(300)]


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    # a model's first generate holds the GIL a while on a busy box: generous liveness
    with Mesh(liveness=50) as m:
        yield m


def counted(exporter: AgentExporter, ok: int) -> Samples:
    """A scrape once `ok` requests are counted answered (a runtime counts just after
    sending the FINAL)."""
    def done() -> Samples | None:
        samples = scrape(exporter.address or "")
        return samples if total(samples, "storymesh_agent_requests_total",
                                outcome="ok") == ok else None
    return wait_for(done, what=f"{ok} requests counted")


def metered(mesh: Mesh, agent: Agent, slots: int = 1) -> AgentExporter:
    exporter = AgentExporter()
    exporter.serve("127.0.0.1:0")
    ready = threading.Event()
    mesh.serve(run_agent, agent, mesh.settings.peer_section(), slots=slots, stop=mesh.stop,
               context=mesh.context, ready=ready, metrics=exporter)
    wait_for(ready.is_set, 120.0, f"{agent.service} READY (loading the model)")
    return exporter


def test_the_transformers_author_counts_tokens_prompts_and_batches(mesh: Mesh,
                                                                   tiny_lm: Path) -> None:
    # Given the author on the tiny random LM, serving metrics
    exporter = metered(mesh, AuthorAgent(backend="transformers", model=str(tiny_lm),
                                         max_new_tokens=24))
    assert exporter.address is not None
    loaded = scrape(exporter.address)
    assert total(loaded, "storymesh_agent_info", backend="transformers") == 1
    assert total(loaded, "storymesh_agent_model_load_seconds") > 0
    # When it writes an outline (streamed: one generate call of one sequence)
    with mesh.client(timeout=120.0) as client:
        client.call("story.author", {"op": "outline", "plot": "A fox finds the moon",
                                     "chapters": 2, "seed": 3})
    # Then the tokens it wrote and the prompt it read are counted, at batch size 1
    after = counted(exporter, 1)
    assert 1 <= total(after, "storymesh_author_tokens_total") <= 24
    assert total(after, "storymesh_author_prompt_tokens_total") > 16
    assert total(after, "storymesh_author_batch_size_count") == 1
    assert total(after, "storymesh_author_batch_size_bucket", le="1.0") == 1


def test_the_diffusers_illustrator_counts_images_and_steps(mesh: Mesh, tiny_sd: Path) -> None:
    # Given the illustrator on the tiny random SD pipeline, serving metrics
    exporter = metered(mesh, IllustratorAgent(backend="diffusers", model=str(tiny_sd),
                                              width=64, height=64, steps=2,
                                              safety_checker=False))
    # When it paints two pictures, one at 3 steps
    with mesh.client(timeout=120.0) as client:
        client.call("story.illustrator", {"prompt": "a fox", "seed": 1})
        client.call("story.illustrator", {"prompt": "the moon", "seed": 2, "steps": 3})
    # Then both pictures and their 5 steps are counted, one picture per call
    after = counted(exporter, 2)
    assert total(after, "storymesh_illustrator_images_total") == 2
    assert total(after, "storymesh_illustrator_steps_total") == 5
    assert total(after, "storymesh_illustrator_batch_size_count") == 2
