"""The `story.author` agent: outlines and chapters, from the embedded storyteller or an LLM.

Ops (DESIGN.md section 4): `outline` streams the outline's lines as PARTIAL `{"text"}` and
ends with FINAL `{title, characters, chapters, cover_prompt}` (plus `world` and per-chapter
`beats`, which let later chapter requests write in the same world); `chapter` streams the
chapter's text and ends with FINAL `{title, text, picture_prompt}`. PARTIAL texts are
deltas, in order; the FINAL is authoritative (a repaired or retried model answer may differ
from what was streamed).

Backends: `embedded` (no weights, deterministic per seed) and `transformers` (a causal LM
from a hub id or folder). With a model, the structure still comes from our code: outlines are
repaired from the embedded one, picture prompts are built from the story's scenes, and an
empty chapter falls back to the embedded text. The model's outline must tell the plot: the
prompt gives each chapter its plot points (the embedded storyteller's reading), an outline
that leaves out some of the plot's words is asked for once more, and what is still missing
is written into the chapters' plans from those points (English books; the words are
compared by English lemma).

Languages (`language` in the request, default `en`): the model writes in the language asked
for; the embedded storyteller writes English only and refuses any other with `bad_request`
naming the transformers backend. Op `languages` says which this author writes (FINAL
`{"backend", "languages"}`, `["*"]` for any): the story service asks it at submission.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from storymesh.agents.author import prompts
from storymesh.agents.author.embedded.plot import World, world_from_outline
from storymesh.agents.author.embedded.storyteller import (
    ChapterDraft,
    outline_lines,
    plot_points,
    write_chapter,
    write_outline,
)
from storymesh.agents.author.hf_backend import DTYPES, Sampling, TransformersBackend
from storymesh.agents.author.repair import (
    best_effort,
    finish_chapter,
    outline_missing,
    repair_outline,
    revise_chapters,
    tell_plot,
)
from storymesh.agents.author.requests import (
    ChapterRequest,
    LanguagesRequest,
    OutlineRequest,
    parse_request,
)
from storymesh.errors import AgentError, ConfigError, FatalAgentError
from storymesh.runtime.agent import Agent, AgentInfo, Final, Partial, Reply, Request
from storymesh.runtime.metrics import BATCH_BUCKETS, MetricSpec
from storymesh.vocabulary import bad, primary_language

log = logging.getLogger(__name__)

BACKENDS = ("embedded", "transformers")
EMBEDDED_MODEL = "embedded-storyteller"
EMBEDDED_LANGUAGES = ("en",)  # the storyteller's templates and word lists are English
ANY_LANGUAGE = "*"
_DEVICE = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")

# Metrics (served with `[author] metrics_bind`). The embedded storyteller has no tokenizer:
# its tokens are the words it writes, and it reads no prompt.
TOKENS = MetricSpec("storymesh_author_tokens_total", "counter",
                    "tokens written (the embedded storyteller counts words)")
PROMPT_TOKENS = MetricSpec("storymesh_author_prompt_tokens_total", "counter",
                           "prompt tokens read by the model")
BATCH_SIZE = MetricSpec("storymesh_author_batch_size", "histogram",
                        "sequences per generation (1 when streaming)", buckets=BATCH_BUCKETS)


@dataclass(frozen=True, slots=True)
class AuthorOptions:
    """The author's settings, checked when the agent is built."""

    backend: str = "embedded"
    model: str | None = None
    device: str = "cpu"
    dtype: str = "auto"
    max_new_tokens: int = 512
    temperature: float = 0.8
    top_p: float = 0.95
    torch_threads: int | None = None

    def validate(self) -> None:
        """Raise ConfigError naming the option for any bad value."""
        if self.backend not in BACKENDS:
            raise ConfigError(f"author backend {self.backend!r}: expected one of "
                              f"{', '.join(BACKENDS)}")
        if self.backend == "transformers" and not self.model:
            raise ConfigError("author backend 'transformers' needs a model: a hub id or a "
                              "folder (--model)")
        if not _DEVICE.match(self.device):
            raise ConfigError(f"author device {self.device!r}: expected cpu, cuda, cuda:N, "
                              "mps or auto")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ConfigError(f"author dtype {self.dtype!r}: expected auto or one of "
                              f"{', '.join(sorted(DTYPES))}")
        if not 1 <= self.max_new_tokens <= 32_768:
            raise ConfigError(f"author max_new_tokens {self.max_new_tokens}: expected "
                              "1..32768")
        if not 0.0 <= self.temperature <= 5.0:
            raise ConfigError(f"author temperature {self.temperature}: expected 0..5 "
                              "(0 = greedy)")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"author top_p {self.top_p}: expected a value in (0, 1]")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"author torch_threads {self.torch_threads}: expected >= 1")


class AuthorAgent(Agent):
    """Writes outlines and chapters for the story service."""

    service = "story.author"
    metric_specs = (TOKENS, PROMPT_TOKENS, BATCH_SIZE)

    def __init__(self, *, backend: str = "embedded", model: str | None = None,
                 device: str = "cpu", dtype: str = "auto", max_new_tokens: int = 512,
                 temperature: float = 0.8, top_p: float = 0.95,
                 torch_threads: int | None = None) -> None:
        self.options = AuthorOptions(backend=backend, model=model, device=device, dtype=dtype,
                                     max_new_tokens=max_new_tokens, temperature=temperature,
                                     top_p=top_p, torch_threads=torch_threads)
        self.options.validate()
        self._lm: TransformersBackend | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def setup(self) -> AgentInfo:
        opts = self.options
        if opts.backend == "embedded":
            if opts.model:
                log.warning("author: backend 'embedded' ignores --model %s", opts.model)
            log.info("author: using the embedded offline storyteller (no model weights)")
            return AgentInfo(backend="embedded", model=EMBEDDED_MODEL, device="cpu",
                             extra={"languages": ",".join(EMBEDDED_LANGUAGES)})
        if self._lm is not None:
            self._lm.close()
            self._lm = None
        lm = TransformersBackend(
            opts.model or "", device=opts.device, dtype=opts.dtype, threads=opts.torch_threads,
            sampling=Sampling(opts.max_new_tokens, opts.temperature, opts.top_p))
        device, dtype = lm.load()
        lm.report = self._generated
        self._lm = lm
        return AgentInfo(backend="transformers", model=opts.model, device=device, dtype=dtype,
                         extra={"chat_template": lm.has_chat_template,
                                "max_new_tokens": opts.max_new_tokens,
                                "languages": ANY_LANGUAGE})

    def teardown(self) -> None:
        if self._lm is not None:
            self._lm.close()
            self._lm = None

    # --- requests -------------------------------------------------------------------------

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages this author writes: the embedded storyteller's, or any."""
        return (ANY_LANGUAGE,) if self.options.backend == "transformers" else EMBEDDED_LANGUAGES

    def handle(self, request: Request) -> Iterator[Reply]:
        parsed = parse_request(request.payload)
        if isinstance(parsed, LanguagesRequest):
            yield Final({"backend": self.options.backend, "languages": list(self.languages)})
            return
        self._check_language(parsed.language)
        if isinstance(parsed, OutlineRequest):
            yield from self._outline(parsed, request)
        else:
            yield from self._chapter(parsed, request)

    def batchable(self, request: Request) -> bool:
        """Chapters for a loaded model batch into one generate call; the rest do not."""
        return self._lm is not None and request.payload.get("op") == "chapter"

    def handle_batch(self, requests: Sequence[Request]) -> list[Final | AgentError]:
        """Serve several requests at once: chapters share one batched `generate` call.

        Each entry is the request's FINAL or the AgentError it failed with, so one bad
        request does not sink the others. Batched chapters are not streamed and not retried
        (a cut-off one is trimmed; an empty one gets the embedded text). The batch is seeded
        with the first chapter's seed.
        """
        results: list[Final | AgentError | None] = [None] * len(requests)
        chapters: list[tuple[int, ChapterRequest]] = []
        for i, request in enumerate(requests):
            try:
                parsed = parse_request(request.payload)
                if self._lm is not None and isinstance(parsed, ChapterRequest):
                    self._check_language(parsed.language)
                    chapters.append((i, parsed))
                else:
                    results[i] = _final_of(self.handle(request))
            except AgentError as exc:
                results[i] = exc
        if chapters:
            for (i, _), final in zip(chapters, self._chapter_batch([c for _, c in chapters]),
                                     strict=True):
                results[i] = final
        return [r if r is not None else FatalAgentError("internal", "no reply") for r in results]

    def _check_language(self, language: str) -> None:
        if ANY_LANGUAGE in self.languages or primary_language(language) in self.languages:
            return
        raise bad(f"language {language!r}: the embedded storyteller writes English only; "
                  "run the author with the transformers backend (--backend transformers "
                  "--model ...) for books in other languages")

    # --- metrics --------------------------------------------------------------------------

    def _generated(self, prompt_tokens: int, new_tokens: int, batch: int) -> None:
        """One generation's figures (the model's, or the embedded storyteller's words)."""
        self.metrics.inc(TOKENS, new_tokens)
        if prompt_tokens:
            self.metrics.inc(PROMPT_TOKENS, prompt_tokens)
        self.metrics.observe(BATCH_SIZE, batch)

    def _wrote(self, *texts: str) -> None:
        self._generated(0, sum(len(text.split()) for text in texts), 1)

    # --- outline --------------------------------------------------------------------------

    def _outline(self, req: OutlineRequest, request: Request) -> Iterator[Reply]:
        fallback = write_outline(plot=req.plot, themes=req.themes, target_age=req.target_age,
                                 art_style=req.art_style, chapters=req.chapters, seed=req.seed,
                                 title=req.title)
        if self._lm is None:
            lines = outline_lines(fallback)
            for line in lines:
                yield Partial({"text": line})
            self._wrote(*lines)
            yield Final(fallback)
            return
        points = _points(fallback)
        prompt = self._lm.render(prompts.outline_messages(req, points))
        pieces: list[str] = []
        for piece in self._lm.stream(prompt, seed=req.seed, cancel=request.cancel):
            pieces.append(piece)
            yield Partial({"text": piece})
        outline, report = repair_outline("".join(pieces), fallback, chapters=req.chapters,
                                         title=req.title)
        log.info("author outline %s: %s", request.id, report.describe())
        if prompts.is_english(req.language):  # the plot's words are compared in English
            outline = self._tell_plot(req, outline, points, retry=not request.cancel.is_set())
        yield Final(outline)

    def _tell_plot(self, req: OutlineRequest, outline: dict[str, Any],
                   points: list[list[str]], *, retry: bool) -> dict[str, Any]:
        """The outline telling the whole plot: asked for once more for what it leaves out,
        then filled from the plot points for what is still missing."""
        missing = outline_missing(req.plot, outline)
        if missing and retry and self._lm is not None:
            log.info("author outline leaves out %s; asking the model once more",
                     ", ".join(missing))
            prompt = self._lm.render(prompts.revision_messages(req, outline, missing, points))
            raw = self._lm.generate_batch([prompt], seed=req.seed + 1)[0]
            revised = revise_chapters(outline, raw)
            if len(outline_missing(req.plot, revised)) < len(missing):
                outline = revised
        outline, filled = tell_plot(outline, req.plot, points)
        if filled:
            log.info("author outline: filled %s from the plot", ", ".join(filled))
        return outline

    # --- chapters -------------------------------------------------------------------------

    def _draft(self, req: ChapterRequest) -> ChapterDraft:
        """The embedded chapter: the picture prompt always, the text when there is no LLM."""
        world = self._world(req)
        return write_chapter(world, req.arc(), req.index, title=req.chapter["title"],
                             seed=req.seed)

    @staticmethod
    def _world(req: ChapterRequest) -> World:
        return world_from_outline(req.outline, target_age=req.target_age, themes=req.themes,
                                  art_style=req.art_style)

    def _chapter(self, req: ChapterRequest, request: Request) -> Iterator[Reply]:
        draft = self._draft(req)
        if self._lm is None:
            for i, paragraph in enumerate(draft.paragraphs):
                last = i == len(draft.paragraphs) - 1
                yield Partial({"text": paragraph if last else paragraph + "\n\n"})
            self._wrote(draft.text)
            yield _chapter_final(draft, draft.text)
            return
        prompt = self._lm.render(self._chapter_messages(req))
        pieces: list[str] = []
        for piece in self._lm.stream(prompt, seed=req.seed, cancel=request.cancel):
            pieces.append(piece)
            yield Partial({"text": piece})
        # A cancelled request is not worth a retry: nobody is waiting for it.
        retry_prompt = None if request.cancel.is_set() else prompt
        text = self._finish(req, draft, "".join(pieces), retry_prompt)
        yield _chapter_final(draft, text)

    def _chapter_messages(self, req: ChapterRequest) -> list[prompts.Message]:
        world = self._world(req)
        return prompts.chapter_messages(req, world, plot_points(world, req.arc()[req.index]))

    def _finish(self, req: ChapterRequest, draft: ChapterDraft, raw: str,
                prompt: str | None) -> str:
        """The model's chapter, trimmed or retried once; the embedded text if it is empty."""
        done = finish_chapter(raw, draft.title)
        if not done.complete and prompt is not None and self._lm is not None:
            log.info("author chapter %d stopped mid-sentence; retrying once", req.index)
            again = finish_chapter(self._lm.generate_batch([prompt], seed=req.seed + 1)[0],
                                   draft.title)
            if again.complete or len(again.text) > len(done.text):
                done = again
        text = done.text if done.complete else best_effort(done.text)
        if not text:
            log.warning("author: the model wrote nothing usable for chapter %d of %r; using "
                        "the embedded storyteller's text", req.index, req.outline["title"])
            return draft.text
        return text

    def _chapter_batch(self, reqs: Sequence[ChapterRequest]) -> list[Final]:
        drafts = [self._draft(r) for r in reqs]
        if self._lm is None:  # embedded: nothing to batch
            for d in drafts:
                self._wrote(d.text)
            return [_chapter_final(d, d.text) for d in drafts]
        batch = [self._lm.render(self._chapter_messages(r)) for r in reqs]
        texts = self._lm.generate_batch(batch, seed=reqs[0].seed)
        return [_chapter_final(d, self._finish(r, d, raw, None))
                for r, d, raw in zip(reqs, drafts, texts, strict=True)]


def _points(outline: dict[str, Any]) -> list[list[str]]:
    """Per chapter, the plot points the embedded storyteller's outline gives it."""
    world = world_from_outline(outline, target_age=None, themes=None, art_style=None)
    return [plot_points(world, chapter["beats"]) for chapter in outline["chapters"]]


def _chapter_final(draft: ChapterDraft, text: str) -> Final:
    return Final({"title": draft.title, "text": text, "picture_prompt": draft.picture_prompt})


def _final_of(replies: Iterator[Reply]) -> Final:
    final: Final | None = None
    for reply in replies:
        if isinstance(reply, Final):
            final = reply
    if final is None:
        raise FatalAgentError("internal", "the author produced no FINAL")
    return final
