"""The transformers backend: a causal language model loaded once, streamed or batched.

The only module of the author that imports torch and transformers, and only inside
`load()`, so choosing the embedded storyteller never pays for them. `stream()` runs
`generate` in a background thread and yields text as a `TextIteratorStreamer` produces it;
`generate_batch()` runs several prompts through one left-padded `generate` call. One lock
keeps generations (and the seeding before them) one at a time on the loaded model:
parallelism comes from batching, not from threads fighting over one model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storymesh.errors import FatalAgentError, RetryableAgentError

log = logging.getLogger(__name__)

ML_HINT = "pip install 'storymesh[ml]'"
DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
MIN_PROMPT_TOKENS = 16

# Told after each `generate` call: (prompt tokens, new tokens, batch size), for metrics.
GenerationReport = Callable[[int, int, int], None]


@dataclass(frozen=True, slots=True)
class Sampling:
    """How text is drawn from the model."""

    max_new_tokens: int
    temperature: float
    top_p: float


def looks_like_folder(model: str) -> bool:
    """A model given as a path ("/models/x", "./x", "~/x") rather than a hub id."""
    return model.startswith(("/", ".", "~"))


def check_model_folder(model: str) -> None:
    """Fail early, with the path, when a model given as a folder is not there."""
    if looks_like_folder(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            raise FatalAgentError("model_error", f"model folder {str(path)!r} does not exist "
                                  "(pass an existing folder or a hub id to --model)")


class TransformersBackend:
    """A loaded tokenizer + causal LM, with streaming and batched generation."""

    def __init__(self, model: str, *, device: str, dtype: str, threads: int | None,
                 sampling: Sampling) -> None:
        self.model_name = model
        self.device = device
        self.dtype = dtype
        self.threads = threads
        self.sampling = sampling
        self.has_chat_template = False
        self.report: GenerationReport = lambda prompt, new, batch: None
        self._lock = threading.Lock()
        self._torch: Any = None
        self._tokenizer: Any = None
        self._model: Any = None
        self._streamer_cls: Any = None
        self._stopping: Any = None

    # --- loading --------------------------------------------------------------------------

    def load(self) -> tuple[str, str]:
        """Load tokenizer and model once; return (device, dtype) as actually placed."""
        check_model_folder(self.model_name)
        torch, transformers = _import_ml()
        self._torch = torch
        self._set_threads(torch)
        kwargs = self._load_kwargs(torch)
        source = str(Path(self.model_name).expanduser()) if looks_like_folder(
            self.model_name) else self.model_name
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source)
            model = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FatalAgentError("model_error", f"could not load model {self.model_name!r}: "
                                  f"{first} (a hub id must already be in the local cache "
                                  "when HF_HUB_OFFLINE=1)") from exc
        if self.device not in ("cpu", "auto"):
            model = model.to(self.device)
        model.eval()
        self._prepare_tokenizer(tokenizer, model)
        self._tokenizer, self._model = tokenizer, model
        self._streamer_cls = transformers.TextIteratorStreamer
        self._stopping = _stopping_classes(transformers)
        placed = str(getattr(model, "device", self.device))
        dtype = str(getattr(model, "dtype", self.dtype)).removeprefix("torch.")
        log.info("author model %s loaded on %s as %s (chat template: %s)", self.model_name,
                 placed, dtype, self.has_chat_template)
        return placed, dtype

    def _set_threads(self, torch: Any) -> None:
        threads = self.threads
        if threads is None and not (self.device.startswith("cuda") or self.device == "auto"):
            # on cores shared with other busy agents, 2 threads can run far slower than 1
            threads = 1
        if threads is not None:
            torch.set_num_threads(threads)

    def _load_kwargs(self, torch: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"dtype": "auto" if self.dtype == "auto" else
                                  getattr(torch, DTYPES[self.dtype])}
        if self.device == "auto":
            kwargs["device_map"] = "auto"
        elif self.device.startswith("cuda") and not torch.cuda.is_available():
            raise FatalAgentError("model_error", f"device {self.device!r} asked for, but torch "
                                  "sees no CUDA GPU (use --device cpu)")
        elif self.device == "mps" and not torch.backends.mps.is_available():
            raise FatalAgentError("model_error", "device 'mps' asked for, but it is not "
                                  "available (use --device cpu)")
        return kwargs

    def _prepare_tokenizer(self, tokenizer: Any, model: Any) -> None:
        """Left padding for batches, and a pad token even when the model has none."""
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            fallback = tokenizer.eos_token or tokenizer.unk_token
            if fallback is not None:
                tokenizer.pad_token = fallback
            else:
                tokenizer.add_special_tokens({"pad_token": "<pad>"})
                model.resize_token_embeddings(len(tokenizer))
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))

    def close(self) -> None:
        torch = self._torch
        self._model = self._tokenizer = None
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --- prompts --------------------------------------------------------------------------

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        """The chat template's text for the messages, or a plain prompt without one."""
        from storymesh.agents.author.prompts import plain_prompt

        if not self.has_chat_template:
            return plain_prompt(messages)
        try:
            text = self._tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                       add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - jinja raises anything; some templates refuse system
            merged = [{"role": "user", "content": plain_prompt(messages).strip()}]
            text = self._tokenizer.apply_chat_template(merged, tokenize=False,
                                                       add_generation_prompt=True)
        return str(text)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode(self, prompts: Sequence[str], max_new: int) -> tuple[Any, int]:
        """Tokenised prompts (left-padded), cut from the left to fit the context window."""
        enc = self._tokenizer(list(prompts), return_tensors="pt", padding=True,
                              add_special_tokens=not self.has_chat_template)
        window = _context_window(self._model)
        length = int(enc["input_ids"].shape[1])
        if window is not None and length + max_new > window:
            keep = max(MIN_PROMPT_TOKENS, window - max_new)
            max_new = max(1, window - keep)
            enc = {k: v[:, -keep:] for k, v in enc.items()}
            log.warning("prompt of %d tokens cut to %d to fit a %d-token window", length,
                        keep, window)
        # With device_map="auto" the inputs go where the first layers are: model.device.
        return {k: v.to(self._model.device) for k, v in enc.items()}, max_new

    def _generate_kwargs(self, max_new: int) -> dict[str, Any]:
        sampling = self.sampling
        kwargs: dict[str, Any] = {"max_new_tokens": max_new,
                                  "pad_token_id": self._tokenizer.pad_token_id}
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature,
                          top_p=sampling.top_p)
        else:
            kwargs["do_sample"] = False
        return kwargs

    # --- generation -----------------------------------------------------------------------

    def stream(self, prompt: str, *, seed: int, max_new_tokens: int | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the continuation of `prompt` piece by piece, as the model writes it."""
        max_new = max_new_tokens or self.sampling.max_new_tokens
        halt = threading.Event()
        errors: list[BaseException] = []
        with self._lock:
            enc, max_new = self._encode([prompt], max_new)
            streamer = self._streamer_cls(self._tokenizer, skip_prompt=True,
                                          skip_special_tokens=True)
            stop_list, stop_cls = self._stopping
            criteria = stop_list([stop_cls(halt, cancel, self._torch)])

            def run() -> None:
                try:
                    with self._torch.inference_mode():
                        out = self._model.generate(**enc, **self._generate_kwargs(max_new),
                                                   streamer=streamer,
                                                   stopping_criteria=criteria)
                    self._report(enc, out[:, enc["input_ids"].shape[1]:])
                except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                    errors.append(exc)
                    streamer.end()

            self._torch.manual_seed(seed)
            thread = threading.Thread(target=run, name="author-generate", daemon=True)
            thread.start()
            try:
                for piece in streamer:
                    if piece:
                        yield piece
            finally:
                halt.set()  # the consumer went away: stop generating, free the lock
                thread.join()
        if errors:
            raise _model_error(errors[0])

    def generate_batch(self, prompts: Sequence[str], *, seed: int = 0,
                       max_new_tokens: int | None = None) -> list[str]:
        """Continuations of several prompts from one left-padded `generate` call."""
        if not prompts:
            return []
        max_new = max_new_tokens or self.sampling.max_new_tokens
        with self._lock:
            enc, max_new = self._encode(prompts, max_new)
            self._torch.manual_seed(seed)
            try:
                with self._torch.inference_mode():
                    out = self._model.generate(**enc, **self._generate_kwargs(max_new))
            except Exception as exc:
                raise _model_error(exc) from exc
        new_tokens = out[:, enc["input_ids"].shape[1]:]
        self._report(enc, new_tokens)
        return [str(t) for t in self._tokenizer.batch_decode(new_tokens,
                                                             skip_special_tokens=True)]


    def _report(self, enc: Any, new_tokens: Any) -> None:
        """Tell `report` what one generate call did; padding is not counted as tokens."""
        prompt = int(enc["attention_mask"].sum()) if "attention_mask" in enc else int(
            enc["input_ids"].numel())
        pad = self._tokenizer.pad_token_id
        new = int((new_tokens != pad).sum()) if pad is not None else int(new_tokens.numel())
        self.report(prompt, new, int(new_tokens.shape[0]))


def _import_ml() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise FatalAgentError("model_error", f"the transformers backend needs the ml extra "
                              f"({exc.name} is missing): {ML_HINT}") from exc
    return torch, transformers


def _context_window(model: Any) -> int | None:
    config = model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _model_error(exc: BaseException) -> RetryableAgentError:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RetryableAgentError("model_error", f"generation failed: {message}")


def _stopping_classes(transformers: Any) -> tuple[Any, Any]:
    """A StoppingCriteria that ends generation when asked (consumer gone, request cancelled)."""

    class StopOnEvent(transformers.StoppingCriteria):  # type: ignore[misc]
        def __init__(self, halt: threading.Event, cancel: threading.Event | None,
                     torch: Any) -> None:
            self.halt, self.cancel, self.torch = halt, cancel, torch

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            stop = self.halt.is_set() or (self.cancel is not None and self.cancel.is_set())
            return self.torch.full((input_ids.shape[0],), stop, dtype=self.torch.bool,
                                   device=input_ids.device)

    return transformers.StoppingCriteriaList, StopOnEvent
