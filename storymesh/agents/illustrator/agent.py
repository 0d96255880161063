"""The `story.illustrator` agent: one picture per request, from the chosen backend.

The agent checks its options at construction (a bad option is a ConfigError naming it),
loads the backend once in `setup()`, and for each request validates the payload
(request.py), renders it and answers one FINAL:
`{"width", "height", "seed", "backend", "art_style", "png": <PNG bytes>}` (+ `"nsfw": true`
when the safety checker withheld the picture, + `"drawn_as"` from the embedded painter: each
figure's kind as the prompt names it -> the drawing it got, the closest it has). A request
without a seed gets one derived from its prompt, reported back so the picture can be made
again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from storymesh import vocabulary
from storymesh.agents.illustrator.backends import (
    BACKENDS,
    DTYPES,
    Backend,
    BackendOptions,
    Rendered,
    make_backend,
)
from storymesh.agents.illustrator.request import (
    MAX_GUIDANCE,
    Defaults,
    IllustrationRequest,
    parse_request,
)
from storymesh.errors import AgentError, ConfigError, FatalAgentError
from storymesh.runtime.agent import Agent, AgentInfo, Final, Reply, Request
from storymesh.runtime.metrics import BATCH_BUCKETS, MetricSpec

log = logging.getLogger(__name__)

# Metrics (served with `[illustrator] metrics_bind`). The embedded painter runs no steps.
IMAGES = MetricSpec("storymesh_illustrator_images_total", "counter", "pictures rendered")
STEPS = MetricSpec("storymesh_illustrator_steps_total", "counter",
                   "diffusion steps run (per picture; a batch of n at s steps counts n*s)")
BATCH_SIZE = MetricSpec("storymesh_illustrator_batch_size", "histogram",
                        "pictures per pipeline call", buckets=BATCH_BUCKETS)


def _check_option(ok: bool, key: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"illustrator option {key}={value!r} is invalid: expected {expected}")


class IllustratorAgent(Agent):
    """Draws a story's pictures: embedded Pillow painter or a diffusers pipeline."""

    service = "story.illustrator"
    metric_specs = (IMAGES, STEPS, BATCH_SIZE)

    def __init__(self, *, backend: str = "embedded", model: str | None = None,
                 device: str = "cpu", dtype: str = "auto", width: int = 512,
                 height: int = 512, steps: int = 25, guidance: float = 7.5,
                 safety_checker: bool = True, torch_threads: int | None = None) -> None:
        side = (vocabulary.MIN_IMAGE_SIDE, vocabulary.MAX_IMAGE_SIDE)
        _check_option(backend in BACKENDS, "backend", backend, " or ".join(BACKENDS))
        _check_option(dtype in DTYPES, "dtype", dtype, " / ".join(DTYPES))
        _check_option(bool(device), "device", device, "cpu, cuda, cuda:N or mps")
        for key, value in (("width", width), ("height", height)):
            _check_option(side[0] <= value <= side[1], key, value, f"{side[0]}..{side[1]}")
        _check_option(1 <= steps <= vocabulary.MAX_STEPS, "steps", steps,
                      f"1..{vocabulary.MAX_STEPS}")
        _check_option(0 <= guidance <= MAX_GUIDANCE, "guidance", guidance,
                      f"0..{MAX_GUIDANCE:g}")
        _check_option(torch_threads is None or torch_threads >= 1, "torch_threads",
                      torch_threads, "a positive integer")
        self.backend_name = backend
        self.defaults = Defaults(width=width, height=height, steps=steps, guidance=guidance)
        self.options = BackendOptions(model=model, device=device, dtype=dtype,
                                      safety_checker=safety_checker,
                                      torch_threads=torch_threads)
        self._backend: Backend | None = None
        self._setup_lock = threading.Lock()

    def setup(self) -> AgentInfo:
        """Load the backend; raises FatalAgentError naming the fix if it cannot."""
        return self._load()[1]

    def _load(self) -> tuple[Backend, AgentInfo]:
        with self._setup_lock:
            backend = make_backend(self.backend_name, self.options)
            info = backend.load()
            self._backend = backend
        log.info("illustrator ready: %s", info.as_meta())
        return backend, info

    def _ready_backend(self) -> Backend:
        # Used without the runtime (tests, scripts), the agent loads on first use.
        return self._backend if self._backend is not None else self._load()[0]

    def batchable(self, request: Request) -> bool:
        """Pictures for a diffusion model batch into one pipeline call."""
        return self.backend_name == "diffusers"

    def handle_batch(self, requests: Sequence[Request]) -> list[Final | AgentError]:
        """Pictures of the same size, steps and guidance share one pipeline call; a bad
        request fails alone. Batched pictures are not cancellable one by one."""
        backend = self._ready_backend()
        outcomes: list[Final | AgentError] = [
            FatalAgentError("internal", "no reply")] * len(requests)
        groups: dict[tuple[int, int, int, float], list[tuple[int, IllustrationRequest]]] = {}
        for i, request in enumerate(requests):
            try:
                job = parse_request(request.payload, self.defaults)
            except AgentError as exc:
                outcomes[i] = exc
                continue
            groups.setdefault((job.width, job.height, job.steps, job.guidance), []).append((i, job))
        render_batch = getattr(backend, "render_batch", None)
        for members in groups.values():
            jobs = [job for _, job in members]
            try:
                rendered = (render_batch(jobs, threading.Event()) if render_batch is not None
                            else [backend.render(job, threading.Event()) for job in jobs])
            except AgentError as exc:
                rendered = [exc] * len(jobs)
            self._painted(backend, [job for job, result in zip(jobs, rendered, strict=True)
                                    if not isinstance(result, AgentError)], len(jobs))
            for (i, job), result in zip(members, rendered, strict=True):
                outcomes[i] = result if isinstance(result, AgentError) else \
                    Final(self._reply(backend, job, result))
        return outcomes

    def _reply(self, backend: Backend, job: IllustrationRequest,
               rendered: Rendered) -> dict[str, Any]:
        reply: dict[str, Any] = {"width": rendered.width, "height": rendered.height,
                                 "seed": job.seed, "backend": backend.name,
                                 "art_style": job.art_style, "png": rendered.png}
        if rendered.nsfw:
            reply["nsfw"] = True
        if rendered.drawn_as is not None:
            reply["drawn_as"] = rendered.drawn_as
        return reply

    def handle(self, request: Request) -> Iterator[Reply]:
        backend = self._ready_backend()
        job = parse_request(request.payload, self.defaults)
        if request.cancel.is_set():
            raise FatalAgentError("cancelled", "the request was cancelled")
        started = time.monotonic()
        rendered = backend.render(job, request.cancel)
        self._painted(backend, [job], 1)
        log.debug("request %s: %dx%d %s seed %s in %.2fs", request.id, rendered.width,
                  rendered.height, job.art_style, job.seed, time.monotonic() - started)
        yield Final(self._reply(backend, job, rendered))

    def _painted(self, backend: Backend, jobs: Sequence[IllustrationRequest],
                 batch: int) -> None:
        """Metrics of one render call of `batch` pictures, `jobs` of them rendered."""
        self.metrics.observe(BATCH_SIZE, batch)
        self.metrics.inc(IMAGES, len(jobs))
        if backend.name != "embedded":
            self.metrics.inc(STEPS, sum(job.steps for job in jobs))

    def teardown(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
