"""Agent backends on this machine: load time, time per chapter / picture / book, memory.

Each agent is driven directly, in this process, through its own `setup()` / `handle()` /
`teardown()` (no broker, no zmq), with every backend it has:

- author `embedded` and `transformers`: a randomly initialised causal LM of a real size
  (`--lm-size gpt2`: GPT-2 small, 124M; `1b`: a Llama of ~1B; `small`: a 4-layer GPT-2 for
  smoke runs) with a word-level tokenizer built offline, saved to a temporary folder and
  loaded by the agent's `setup()`, like a user's model. Besides the agent's times, it gives
  tokens/s of `generate_batch()` (what `AuthorAgent.handle_batch()` uses) at batch 1 and at
  each `--batch` size.
- illustrator `embedded` and `diffusers`: a random Stable Diffusion pipeline (`--sd-size
  tiny|small|sd15`; sd15 = the SD 1.5 UNet, VAE and CLIP text encoder sizes), saved and loaded
  the same way.
- publisher (reportlab, HTML, EPUB): one 3-chapter book in every format.

A book is the embedded author's 3-chapter story: outline + 3 chapters (author), cover + 3
pictures (illustrator), one publish (publisher). "per book" is each agent's share, run one
request after another; the `book:` rows add the shares up (embedded; "with models" =
transformers + diffusers + publisher), with no pipelining.

Random weights never stop early, and a chapter cut off mid-sentence is retried once by the
author, so a transformers chapter costs two generations of `--max-new-tokens` (the retries
are counted). Tokens/s is new tokens over the wall time of `generate_batch()`, prompt
included; the prompt's share (prefill) is measured apart at batch 1. Peak RSS is the
process's, reset before each backend through /proc/self/clear_refs; the embedded backends
run first, before torch is imported, so theirs is an embedded daemon's. On CUDA,
`torch.cuda.max_memory_allocated` is reported too.
Optional parts are skipped with a line saying why: diffusers, reportlab/ebooklib, Pillow.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/agents.py [--quick] [--json]
        [--device cpu|cuda] [--dtype auto|float32|float16|bfloat16] [--threads N]
        [--lm-size small|gpt2|1b] [--sd-size tiny|small|sd15] [--size PX] [--steps N]
        [--batch 1,4,8] [--max-new-tokens N] [--repeats N] [--skip author,illustrator,...]
    .venv/bin/python benchmarks/agents.py --show result.json   # the table of a saved run
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random models only: never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from storymesh.runtime.agent import Agent, Final, Request
from testkit.tiny_models import write_clip_tokenizer

log = logging.getLogger("benchmarks.agents")

PLOT = ("A shy little fox who is afraid of the dark sets out to find the lost star, so that "
        "the forest animals can sleep again.")
THEMES = ["friendship", "courage"]
CHAPTERS = 3
SEED = 7
SECTIONS = ("author", "illustrator", "publisher")
SKIPPABLE = (*SECTIONS, "embedded", "transformers", "diffusers")
MAX_BATCH = 64
MAX_REPEATS = 20
SPECIAL = ["[UNK]", "[PAD]", "[BOS]", "[EOS]", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


# --- sizes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LmSpec:
    """A causal LM architecture: GPT-2 or Llama, at some size."""

    arch: str
    layers: int
    hidden: int
    heads: int
    vocab: int
    context: int
    intermediate: int = 0  # Llama only


LM_SIZES = {
    "small": LmSpec("gpt2", layers=4, hidden=256, heads=4, vocab=4096, context=1024),
    "gpt2": LmSpec("gpt2", layers=12, hidden=768, heads=12, vocab=50257, context=1024),
    "1b": LmSpec("llama", layers=16, hidden=2048, heads=32, vocab=32000, context=2048,
                 intermediate=5632),
}


@dataclass(frozen=True, slots=True)
class SdSpec:
    """A Stable Diffusion pipeline's sizes: UNet, VAE and CLIP text encoder."""

    unet: tuple[int, ...]
    unet_layers: int
    unet_heads: int
    unet_groups: int
    vae: tuple[int, ...]
    vae_layers: int
    vae_groups: int
    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    text_vocab: int  # the encoder's embedding rows; the tokenizer itself is small


SD_SIZES = {
    "tiny": SdSpec((16, 32), 1, 4, 8, (8, 8, 16, 16), 1, 4, 32, 37, 2, 4, 0),
    "small": SdSpec((64, 128, 256, 256), 1, 4, 32, (32, 64, 64, 64), 1, 32, 256, 1024, 4, 4,
                    0),
    "sd15": SdSpec((320, 640, 1280, 1280), 2, 8, 32, (128, 256, 512, 512), 2, 32, 768, 3072,
                   12, 12, 49408),
}


@dataclass(frozen=True, slots=True)
class Settings:
    """What one run measures, after device-dependent defaults are filled in."""

    device: str
    dtype: str
    threads: int | None
    lm_size: str
    sd_size: str
    size: int
    steps: int
    batches: tuple[int, ...]
    max_new_tokens: int
    repeats: int
    skip: frozenset[str]

    def runs(self, section: str, backend: str) -> bool:
        return not {section, backend} & self.skip


# --- measuring ----------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """One backend's figures; None where a figure does not apply."""

    backend: str
    load_s: float | None = None
    chapter_s: float | None = None
    picture_s: float | None = None
    book_s: float | None = None
    tps_1: float | None = None
    tps_batched: float | None = None
    best_batch: int | None = None
    peak_rss_mb: float | None = None
    cuda_peak_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Memory:
    """Peak memory of one backend: RSS (VmHWM, reset per backend) and CUDA allocations."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.cuda = device.startswith("cuda")

    def start(self) -> None:
        gc.collect()
        reset_peak_rss()
        if self.cuda:
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def stop(self, row: Row) -> None:
        row.peak_rss_mb = _peak_rss_mb()
        if self.cuda:
            import torch

            row.cuda_peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM); False where the kernel does not allow it."""
    try:  # "5" resets VmHWM; Linux >= 4.0
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str = "cpu") -> tuple[float, Any]:
    """Seconds `fn()` took (after the device finished) and what it returned."""
    _sync(device)
    started = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - started, result


def final_of(agent: Agent, payload: dict[str, Any]) -> dict[str, Any]:
    """Run one request through `agent.handle()` and return its FINAL payload."""
    final: Final | None = None
    for reply in agent.handle(Request(id="bench", payload=payload)):
        if isinstance(reply, Final):
            final = reply
    if final is None:
        raise RuntimeError(f"{type(agent).__name__} answered no FINAL")
    return final.payload


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# --- the book -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Book:
    """The requests of one 3-chapter book, written by the embedded author."""

    outline_request: dict[str, Any]
    chapter_requests: list[dict[str, Any]]
    outline: dict[str, Any]
    chapters: list[dict[str, Any]]

    def picture_requests(self) -> list[dict[str, Any]]:
        prompts = [self.outline["cover_prompt"]] + [c["picture_prompt"] for c in self.chapters]
        return [{"prompt": p, "characters": self.outline["characters"], "seed": SEED + i}
                for i, p in enumerate(prompts)]

    def publish_request(self, pngs: list[bytes]) -> dict[str, Any]:
        chapters = [{"title": c["title"], "text": c["text"], "png": png}
                    for c, png in zip(self.chapters, pngs[1:], strict=True)]
        return {"title": self.outline["title"], "byline": "storymesh benchmark",
                "cover_png": pngs[0], "chapters": chapters, "formats": ["pdf", "html", "epub"]}

    def corpus(self) -> list[str]:
        """Text whose words seed the LM tokenizer's vocabulary."""
        return [PLOT, json.dumps(self.outline), *(c["text"] for c in self.chapters)]


def write_book() -> Book:
    from storymesh.agents.author import AuthorAgent

    agent = AuthorAgent()
    agent.setup()
    ask = {"op": "outline", "plot": PLOT, "themes": THEMES, "target_age": "4-7",
           "chapters": CHAPTERS, "seed": SEED}
    outline = final_of(agent, ask)
    requests: list[dict[str, Any]] = []
    chapters: list[dict[str, Any]] = []
    for index in range(CHAPTERS):
        previous = chapters[-1]["text"] if chapters else ""
        requests.append({"op": "chapter", "outline": outline, "index": index,
                         "previous_text": previous, "seed": SEED})
        chapters.append(final_of(agent, requests[-1]))
    agent.teardown()
    return Book(ask, requests, outline, chapters)


# --- random models ------------------------------------------------------------------------


def _torch_dtype(torch: Any, name: str, device: str) -> Any:
    if name == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    return getattr(torch, name)


def word_tokenizer(corpus: Iterable[str], vocab_size: int, context: int) -> Any:
    """A word-level tokenizer: the corpus's words, then filler words up to `vocab_size`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL)}
    for word in (w for text in corpus for w in text.split()):
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(word, len(vocab))
    for i in range(2 * vocab_size):  # bounded: a filler may already be a corpus word
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(f"~{i}", len(vocab))
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]",
        eos_token="[EOS]", model_max_length=context)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_lm(folder: Path, spec: LmSpec, corpus: list[str], dtype: Any) -> int:
    """Save a random causal LM of `spec`'s size and its tokenizer; return its parameters."""
    import torch
    import transformers

    tokenizer = word_tokenizer(corpus, spec.vocab, spec.context)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    if spec.arch == "gpt2":
        config: Any = transformers.GPT2Config(
            vocab_size=spec.vocab, n_positions=spec.context, n_embd=spec.hidden,
            n_layer=spec.layers, n_head=spec.heads, **ids)
        model_cls: Any = transformers.GPT2LMHeadModel
    else:
        config = transformers.LlamaConfig(
            vocab_size=spec.vocab, hidden_size=spec.hidden, intermediate_size=spec.intermediate,
            num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
            num_key_value_heads=spec.heads, max_position_embeddings=spec.context,
            tie_word_embeddings=False, **ids)
        model_cls = transformers.LlamaForCausalLM
    torch.manual_seed(0)
    model = model_cls(config).to(dtype)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return int(params)


def clip_tokenizer(folder: Path) -> Any:
    """A byte-level CLIP tokenizer (a few merges) written to `folder` and loaded from it."""
    from transformers import CLIPTokenizer

    write_clip_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


def _unet(d: Any, spec: SdSpec, size: int) -> Any:
    blocks = len(spec.unet)
    return d.UNet2DConditionModel(
        sample_size=size // 8, in_channels=4, out_channels=4, block_out_channels=spec.unet,
        layers_per_block=spec.unet_layers, attention_head_dim=spec.unet_heads,
        norm_num_groups=spec.unet_groups, cross_attention_dim=spec.text_hidden,
        down_block_types=("CrossAttnDownBlock2D",) * (blocks - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (blocks - 1))


def _vae(d: Any, spec: SdSpec, size: int) -> Any:
    # Four encoder blocks = 8x downsampling, like real SD (vae_scale_factor 8).
    return d.AutoencoderKL(
        block_out_channels=spec.vae, in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=spec.vae_layers, norm_num_groups=spec.vae_groups, sample_size=size)


def build_sd(folder: Path, spec: SdSpec, size: int, dtype: Any) -> int:
    """Save a random Stable Diffusion pipeline of `spec`'s size; return its parameters."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    d: Any = diffusers  # only partly typed
    d.utils.logging.disable_progress_bar()  # "Loading pipeline components" on every load
    torch.manual_seed(0)
    tokenizer = clip_tokenizer(folder / "clip-tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=max(len(tokenizer), spec.text_vocab), hidden_size=spec.text_hidden,
        intermediate_size=spec.text_intermediate, num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads, max_position_embeddings=77,
        projection_dim=spec.text_hidden, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    # DDIM: PNDM's warm-up steps fail at very few inference steps.
    scheduler = d.DDIMScheduler(beta_start=0.00085, beta_end=0.012,
                                beta_schedule="scaled_linear", clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1)
    pipe = d.StableDiffusionPipeline(
        unet=_unet(d, spec, size), vae=_vae(d, spec, size), text_encoder=text_encoder,
        tokenizer=tokenizer, scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    if dtype != torch.float32:  # built in float32; saved as it will be loaded
        pipe.to(dtype=dtype)
    params = sum(p.numel() for part in (pipe.unet, pipe.vae, pipe.text_encoder)
                 for p in part.parameters())
    pipe.save_pretrained(str(folder / "pipeline"))
    return int(params)


# --- sections -----------------------------------------------------------------------------


class RetryCounter(logging.Handler):
    """Counts the author's 'stopped mid-sentence; retrying once' log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying once" in record.getMessage():
            self.count += 1


def bench_author(agent: Any, book: Book, repeats: int, row: Row, device: str) -> None:
    """Load, then write the book's outline and chapters `repeats` times."""
    row.load_s, _ = timed(agent.setup, device)
    outlines: list[float] = []
    chapters: list[list[float]] = []
    for _ in range(repeats):
        outlines.append(timed(lambda: final_of(agent, book.outline_request), device)[0])
        chapters.append([timed(lambda r=r: final_of(agent, r), device)[0]  # type: ignore[misc]
                         for r in book.chapter_requests])
    row.chapter_s = median(t for run in chapters for t in run)
    row.book_s = median(o + sum(c) for o, c in zip(outlines, chapters, strict=True))
    row.extra["outline_s"] = median(outlines)


def chapter_prompts(backend: Any, book: Book) -> list[str]:
    """The author's own chapter prompts for the book, rendered by the loaded tokenizer."""
    from storymesh.agents.author import prompts
    from storymesh.agents.author.embedded.plot import world_from_outline
    from storymesh.agents.author.requests import ChapterRequest, parse_request

    rendered = []
    for payload in book.chapter_requests:
        req = parse_request(payload)
        if not isinstance(req, ChapterRequest):
            raise TypeError("a chapter request parsed as an outline")
        world = world_from_outline(req.outline, target_age=req.target_age or "4-7",
                                   themes=req.themes, art_style=req.art_style)
        rendered.append(backend.render(prompts.chapter_messages(req, world)))
    return rendered


def tokens_per_second(folder: Path, book: Book, s: Settings, row: Row) -> None:
    """Tokens/s of `generate_batch()` (batched chapters), batch 1 and each `--batch` size."""
    from storymesh.agents.author.hf_backend import Sampling, TransformersBackend

    lm = TransformersBackend(str(folder), device=s.device, dtype=s.dtype, threads=s.threads,
                             sampling=Sampling(s.max_new_tokens, 0.8, 0.95))
    lm.load()
    prompts = chapter_prompts(lm, book)
    row.extra["prompt_tokens"] = [lm.count_tokens(p) for p in prompts]
    lm.generate_batch(prompts[:1], seed=SEED, max_new_tokens=2)  # warm-up
    # The rates below include reading the ~300-400-token prompt; this splits it out at b=1.
    prefill, _ = timed(lambda: lm.generate_batch(prompts[:1], seed=SEED, max_new_tokens=1),
                       s.device)
    row.extra["prefill_s_b1"] = round(prefill, 3)
    rates: dict[int, float] = {}
    for batch in sorted({1, *s.batches}):
        chosen = [prompts[i % len(prompts)] for i in range(batch)]
        seconds, texts = timed(lambda c=chosen: lm.generate_batch(  # type: ignore[misc]
            c, seed=SEED, max_new_tokens=s.max_new_tokens), s.device)
        tokens = sum(lm.count_tokens(t) for t in texts)
        rates[batch] = tokens / seconds
        if batch == 1 and seconds > prefill and tokens > 1:
            row.extra["decode_tok_s_b1"] = round((tokens - 1) / (seconds - prefill), 1)
    lm.close()
    row.tps_1 = rates[1]
    row.best_batch = max(rates, key=lambda b: rates[b])
    row.tps_batched = rates[row.best_batch]
    row.extra["tokens_per_s"] = {str(b): round(r, 1) for b, r in rates.items()}


def run_author_embedded(s: Settings, book: Book) -> Iterator[Row]:
    from storymesh.agents.author import AuthorAgent

    if s.runs("author", "embedded"):
        row = Row("author/embedded")
        memory = Memory("cpu")
        memory.start()
        bench_author(AuthorAgent(), book, s.repeats, row, "cpu")
        memory.stop(row)
        yield row


def run_author_model(s: Settings, book: Book, lm_folder: Path) -> Iterator[Row]:
    from storymesh.agents.author import AuthorAgent

    row = Row("author/transformers")
    memory = Memory(s.device)
    memory.start()
    counter = RetryCounter()
    agent_log = logging.getLogger("storymesh.agents.author.agent")
    agent_log.addHandler(counter)
    agent_log.setLevel(logging.INFO)
    agent = AuthorAgent(backend="transformers", model=str(lm_folder), device=s.device,
                        dtype=s.dtype, max_new_tokens=s.max_new_tokens, torch_threads=s.threads)
    try:
        bench_author(agent, book, 1, row, s.device)  # minutes per repeat on a CPU
    finally:
        agent.teardown()
        agent_log.removeHandler(counter)
    row.extra["retries"] = counter.count
    gc.collect()  # the agent's model goes before the throughput run loads its own
    tokens_per_second(lm_folder, book, s, row)
    memory.stop(row)
    yield row


def bench_pictures(agent: Any, book: Book, repeats: int, row: Row, device: str) -> list[bytes]:
    """Load, warm up with one 1-step picture, then draw the book's 4 pictures."""
    row.load_s, _ = timed(agent.setup, device)
    requests = book.picture_requests()
    final_of(agent, {**requests[0], "steps": 1})
    books: list[float] = []
    pictures: list[float] = []
    pngs: list[bytes] = []
    for _ in range(repeats):
        times = []
        for request in requests:
            seconds, reply = timed(lambda r=request: final_of(agent, r),  # type: ignore[misc]
                                   device)
            times.append(seconds)
            pngs.append(reply["png"])
        books.append(sum(times))
        pictures.extend(times)
    agent.teardown()
    row.picture_s, row.book_s = median(pictures), median(books)
    return pngs[:len(requests)]


def run_illustrator_embedded(s: Settings, book: Book, notes: list[str]
                             ) -> tuple[list[Row], list[bytes]]:
    try:
        from storymesh.agents.illustrator import IllustratorAgent
    except ImportError as exc:
        notes.append(f"illustrator: skipped ({exc.name} is not installed)")
        return [], []
    if not s.runs("illustrator", "embedded"):
        return [], []
    row = Row("illustrator/embedded", extra={"size": s.size})
    memory = Memory("cpu")
    memory.start()
    pngs = bench_pictures(IllustratorAgent(width=s.size, height=s.size), book, s.repeats, row,
                          "cpu")
    memory.stop(row)
    return [row], pngs


def run_illustrator_model(s: Settings, book: Book, sd_folder: Path) -> Iterator[Row]:
    from storymesh.agents.illustrator import IllustratorAgent

    row = Row("illustrator/diffusers", extra={"size": s.size, "steps": s.steps})
    memory = Memory(s.device)
    memory.start()
    agent = IllustratorAgent(backend="diffusers", model=str(sd_folder), device=s.device,
                             dtype=s.dtype, width=s.size, height=s.size, steps=s.steps,
                             safety_checker=False, torch_threads=s.threads)
    bench_pictures(agent, book, 1, row, s.device)
    memory.stop(row)
    yield row


def run_publisher(s: Settings, book: Book, pngs: list[bytes], notes: list[str]) -> list[Row]:
    from storymesh.errors import AgentError

    if len(pngs) != CHAPTERS + 1:
        notes.append("publisher: skipped (it publishes the embedded illustrator's pictures, "
                     "which did not run)")
        return []
    from storymesh.agents.publisher import PublisherAgent

    row = Row("publisher")
    memory = Memory("cpu")
    memory.start()
    agent = PublisherAgent()
    try:
        row.load_s, _ = timed(agent.setup)
    except AgentError as exc:  # reportlab or ebooklib missing: setup() names the fix
        notes.append(f"publisher: skipped ({exc})")
        return []
    request = book.publish_request(pngs)
    times = [timed(lambda: final_of(agent, request))[0] for _ in range(s.repeats)]
    agent.teardown()
    row.book_s = median(times)
    memory.stop(row)
    return [row]


def book_rows(rows: list[Row]) -> list[Row]:
    """The sums of each agent's share of a book: embedded, and with the model backends."""
    by_name = {row.backend: row for row in rows}
    combos = {"book: embedded": ("author/embedded", "illustrator/embedded", "publisher"),
              "book: with models": ("author/transformers", "illustrator/diffusers",
                                                 "publisher")}
    out = []
    for label, names in combos.items():
        parts = [by_name.get(n) for n in names]
        if all(p is not None and p.book_s is not None for p in parts):
            out.append(Row(label, book_s=sum(p.book_s for p in parts if p and p.book_s)))
    return out


# --- building and running -----------------------------------------------------------------


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def build_models(s: Settings, book: Book, work: Path, notes: list[str],
                 info: dict[str, Any]) -> tuple[Path | None, Path | None]:
    """Build the random models first: agents set torch threads, which would slow builds."""
    lm_folder = sd_folder = None
    need_lm = s.runs("author", "transformers")
    need_sd = s.runs("illustrator", "diffusers")
    if not (need_lm or need_sd):
        return None, None
    if not (has_module("torch") and has_module("transformers")):
        notes.append("transformers, diffusers: skipped (torch or transformers is not "
                     "installed: pip install 'storymesh[ml]')")
        return None, None
    import torch

    if need_lm:
        dtype = _torch_dtype(torch, s.dtype, s.device)
        seconds, params = timed(lambda: build_lm(work / "lm", LM_SIZES[s.lm_size],
                                                 book.corpus(), dtype))
        lm_folder = work / "lm"
        info["lm"] = {"size": s.lm_size, "params_m": round(params / 1e6, 1),
                      "build_s": round(seconds, 1), **asdict(LM_SIZES[s.lm_size])}
    if need_sd and not has_module("diffusers"):
        notes.append("illustrator/diffusers: skipped (diffusers is not installed: "
                     "pip install 'storymesh[ml]')")
    elif need_sd:
        dtype = _torch_dtype(torch, s.dtype, s.device)
        if s.dtype == "auto" and s.device != "cpu":
            dtype = torch.float16  # what the illustrator's "auto" loads on a GPU
        seconds, params = timed(lambda: build_sd(work / "sd", SD_SIZES[s.sd_size], s.size,
                                                 dtype))
        sd_folder = work / "sd" / "pipeline"
        info["sd"] = {"size": s.sd_size, "params_m": round(params / 1e6, 1),
                      "build_s": round(seconds, 1), "unet": SD_SIZES[s.sd_size].unet}
    return lm_folder, sd_folder


def machine() -> dict[str, Any]:
    facts: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                             "platform": platform.platform(terse=True)}
    for name in ("torch", "transformers", "diffusers"):
        if has_module(name):
            facts[name] = __import__(name).__version__
    if "torch" in facts:
        import torch

        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def run_embedded(s: Settings, book: Book, notes: list[str]) -> list[Row]:
    """The backends without weights, run before torch is imported so their RSS is their own."""
    rows: list[Row] = []
    if "author" not in s.skip:
        rows.extend(run_author_embedded(s, book))
    pngs: list[bytes] = []
    if "illustrator" not in s.skip:
        found, pngs = run_illustrator_embedded(s, book, notes)
        rows.extend(found)
    if "publisher" not in s.skip:
        rows.extend(run_publisher(s, book, pngs, notes))
    return rows


def run_models(s: Settings, book: Book, notes: list[str], info: dict[str, Any]) -> list[Row]:
    """Build the random models into a temporary folder, then load and time them."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="storymesh-bench-") as tmp:
        lm_folder, sd_folder = build_models(s, book, Path(tmp), notes, info)
        if lm_folder is not None:
            rows.extend(run_author_model(s, book, lm_folder))
        if sd_folder is not None:
            rows.extend(run_illustrator_model(s, book, sd_folder))
    return rows


def check_device(device: str) -> None:
    """Fail before any work when the GPU asked for is not there."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(f"--device {device}: torch {torch.__version__} sees no CUDA GPU")


def run(s: Settings) -> dict[str, Any]:
    check_device(s.device)
    notes: list[str] = []
    if not reset_peak_rss():
        notes.append("peak RSS could not be reset per backend: each figure is the process's "
                     "peak so far")
    info: dict[str, Any] = {}
    book = write_book()
    rows = run_embedded(s, book, notes)
    rows.extend(run_models(s, book, notes, info))
    rows.extend(book_rows(rows))
    settings = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in asdict(s).items()}
    return {"date": datetime.date.today().isoformat(), "machine": machine(),
            "settings": settings, "models": info, "rows": [asdict(r) for r in rows],
            "notes": notes}


# --- output -------------------------------------------------------------------------------

COLUMNS = ("backend", "load s", "chapter s", "picture s", "book s", "tok/s b1",
           "tok/s batched", "peak RSS MB", "CUDA peak MB")


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def cells(row: dict[str, Any]) -> list[str]:
    batched = _num(row["tps_batched"], 1)
    if row["best_batch"] is not None:
        batched += f" (b={row['best_batch']})"
    # Three decimals: the embedded backends take milliseconds.
    return [row["backend"], _num(row["load_s"], 3), _num(row["chapter_s"], 3),
            _num(row["picture_s"], 3), _num(row["book_s"], 3), _num(row["tps_1"], 1), batched,
            _num(row["peak_rss_mb"], 0), _num(row["cuda_peak_mb"], 0)]


def footer(result: dict[str, Any]) -> list[str]:
    lines = [f"{result['date']}  {json.dumps(result['machine'])}",
             f"settings: {json.dumps(result['settings'])}"]
    lines += [f"model {k}: {json.dumps(v)}" for k, v in result["models"].items()]
    lines += [f"{r['backend']}: {json.dumps(r['extra'])}" for r in result["rows"] if r["extra"]]
    return [*lines, *result["notes"]]


def show(result: dict[str, Any]) -> None:
    """A rich table when rich is installed, plain aligned text otherwise."""
    table = [cells(row) for row in result["rows"]]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(COLUMNS)]
        for line in [list(COLUMNS), *table]:
            sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True))
                             + "\n")
        sys.stdout.write("\n".join(footer(result)) + "\n")
        return
    rich_table = Table(*COLUMNS, title="storymesh agents")
    for line in table:
        rich_table.add_row(*line)
    console = Console()
    if console.width < 130:  # not a terminal, or a narrow one: keep rows on one line
        console = Console(width=130)
    console.print(rich_table)
    for text in footer(result):
        console.print(text, markup=False, highlight=False)


# --- command line -------------------------------------------------------------------------


def _int_list(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or not all(1 <= v <= MAX_BATCH for v in values):
        raise argparse.ArgumentTypeError(f"expected sizes in 1..{MAX_BATCH}, like 1,4,8")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="auto",
                   choices=("auto", "float32", "float16", "bfloat16"),
                   help="model dtype (auto: float32 on CPU; bf16 LM, fp16 SD on a GPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for the model backends (default: the agents' own, 1 "
                        "on a CPU)")
    p.add_argument("--lm-size", choices=tuple(LM_SIZES), help="default: gpt2 (CPU), 1b (GPU)")
    p.add_argument("--sd-size", choices=tuple(SD_SIZES),
                   help="default: small (CPU), sd15 (GPU)")
    p.add_argument("--size", type=int, help="picture side, px (default: 256 CPU, 512 GPU)")
    p.add_argument("--steps", type=int, help="diffusion steps (default: 4 CPU, 25 GPU)")
    p.add_argument("--batch", type=_int_list, default=(1, 4, 8),
                   help="batch sizes for tokens/s, like 1,4,8")
    p.add_argument("--max-new-tokens", type=int,
                   help="author max_new_tokens and tokens per tokens/s run (default: 48 "
                        "CPU, 512 GPU)")
    p.add_argument("--repeats", type=int, default=3,
                   help=f"repeats of the embedded backends and the publisher (1..{MAX_REPEATS})")
    p.add_argument("--skip", action="append", default=[],
                   help=f"comma-separated parts to skip: {', '.join(SKIPPABLE)}")
    p.add_argument("--quick", action="store_true",
                   help="a fast smoke run: small LM, tiny SD at 64 px, 2 steps, 8 tokens")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--show", type=Path, metavar="FILE",
                   help="print the table of a saved --json result and run nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="log the agents' INFO lines")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    gpu = args.device != "cpu"
    skip = frozenset(part.strip() for item in args.skip for part in item.split(",")
                     if part.strip())
    if unknown := skip - set(SKIPPABLE):
        raise SystemExit(f"--skip {','.join(sorted(unknown))}: expected {', '.join(SKIPPABLE)}")
    s = Settings(device=args.device, dtype=args.dtype, threads=args.threads,
                 lm_size=args.lm_size or ("1b" if gpu else "gpt2"),
                 sd_size=args.sd_size or ("sd15" if gpu else "small"),
                 size=args.size or (512 if gpu else 256), steps=args.steps or (25 if gpu else 4),
                 batches=args.batch, max_new_tokens=args.max_new_tokens or (512 if gpu else 48),
                 repeats=min(max(args.repeats, 1), MAX_REPEATS), skip=skip)
    if args.quick:
        s = replace(s, lm_size=args.lm_size or "small", sd_size=args.sd_size or "tiny",
                    size=args.size or 64, steps=args.steps or 2,
                    max_new_tokens=args.max_new_tokens or 8, repeats=1,
                    batches=tuple(b for b in s.batches if b <= 2) or (1,))
    if s.size % 8 or not 64 <= s.size <= 2048:
        raise SystemExit(f"--size {s.size}: expected a multiple of 8 in 64..2048")
    return s


def quiet_libraries() -> None:
    """Keep the table readable: no progress bars, no warnings about random models."""
    # Read when the libraries are imported, which is later (importing them now would put
    # them in the embedded backends' RSS).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # A toy CLIP tokenizer cuts prompts into many tokens: truncation warnings on every picture.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    # Random weights make every chapter "stop mid-sentence"; the retries are counted.
    logging.getLogger("storymesh.agents.author.agent").propagate = False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        quiet_libraries()
    if args.show is not None:
        show(json.loads(args.show.read_text(encoding="utf-8")))
        return 0
    result = run(settings_from(args))
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        show(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
