"""The diffusers backend: a real text-to-image pipeline, loaded once, used per request.

`load()` imports torch and diffusers (the `ml` extra), resolves device and dtype, and loads
the model (a hub id, or a local folder such as one written by `save_pretrained`) with
`AutoPipelineForText2Image.from_pretrained(model, dtype=...)`, falling back to
`StableDiffusionPipeline` for folders the auto class cannot map. The pipeline's own safety
checker stays on unless `safety_checker=False`; a flagged picture is never returned: the
reply carries `nsfw: true` and a blank placeholder instead.

One pipeline serves every slot of the process, and pipelines keep scheduler state between
steps, so calls are serialised with a lock. Each request gets its own seeded
`torch.Generator`, so a seed gives the same picture on the same device and library versions.
"""

from __future__ import annotations

import inspect
import io
import logging
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from storymesh.agents.illustrator.backends import BackendOptions, Rendered
from storymesh.agents.illustrator.prompt import approx_tokens, build_negative, build_prompt
from storymesh.agents.illustrator.request import IllustrationRequest
from storymesh.errors import FatalAgentError, RetryableAgentError
from storymesh.runtime.agent import AgentInfo

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'storymesh[ml]'"
PLACEHOLDER_RGB = (236, 236, 240)  # what an NSFW-flagged picture is replaced with


class _Cancelled(Exception):
    """Raised from the step callback to stop a cancelled request between steps."""


def looks_local(model: str) -> bool:
    """Whether `model` names a folder rather than a hub id ("org/name")."""
    path = Path(model).expanduser()
    return (model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1
            or path.exists())


def round_side(side: int, multiple: int = 8) -> int:
    """The nearest multiple of the VAE's scale factor (at least one multiple)."""
    return max(multiple, round(side / multiple) * multiple)


def placeholder_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), PLACEHOLDER_RGB).save(out, format="PNG")
    return out.getvalue()


class DiffusersBackend:
    """A diffusers text-to-image pipeline behind the illustrator."""

    name = "diffusers"

    def __init__(self, options: BackendOptions) -> None:
        self.options = options
        self._pipe: Any = None
        self._torch: Any = None
        self._lock = threading.Lock()
        self._multiple = 8

    # -- loading -------------------------------------------------------------------------
    def load(self) -> AgentInfo:
        model = self.options.model
        if not model:
            raise FatalAgentError("model_error", "the diffusers backend needs a model: "
                                                 "a hub id or a local folder (--model)")
        if looks_local(model) and not Path(model).expanduser().is_dir():
            raise FatalAgentError("model_error", f"model folder {model!r} does not exist")
        torch = self._import_torch()
        device, dtype_name = self._device(torch), self._dtype_name()
        self._set_threads(torch, device)
        pipe = self._from_pretrained(str(Path(model).expanduser()) if looks_local(model)
                                     else model, getattr(torch, dtype_name))
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        checker = getattr(pipe, "safety_checker", None) is not None
        self._pipe = pipe
        self._multiple = int(getattr(pipe, "vae_scale_factor", 8) or 8)
        log.info("loaded %s from %s on %s (%s), safety checker %s", type(pipe).__name__, model,
                 device, dtype_name, "on" if checker else "off")
        return AgentInfo(backend=self.name, model=model, device=device, dtype=dtype_name,
                         extra={"pipeline": type(pipe).__name__, "safety_checker": checker})

    def _import_torch(self) -> Any:
        try:
            import diffusers  # noqa: F401
            import torch
        except ImportError as exc:
            raise FatalAgentError("model_error", f"the diffusers backend needs the ml extra "
                                                 f"({exc.name} is missing): {INSTALL_HINT}"
                                  ) from None
        self._torch = torch
        return torch

    def _device(self, torch: Any) -> str:
        device = self.options.device
        try:
            parsed = torch.device(device)
        except RuntimeError:
            raise FatalAgentError("model_error", f"unknown device {device!r}; use cpu, cuda, "
                                                 "cuda:N or mps") from None
        if parsed.type == "cuda" and not torch.cuda.is_available():
            raise FatalAgentError("model_error", f"device {device!r} asked for, but torch sees "
                                                 "no CUDA GPU; use --device cpu")
        if parsed.type == "mps" and not torch.backends.mps.is_available():
            raise FatalAgentError("model_error", "device 'mps' asked for, but it is not "
                                                 "available; use --device cpu")
        return device

    def _dtype_name(self) -> str:
        if self.options.dtype != "auto":
            return self.options.dtype
        # Half precision halves GPU memory at no visible cost; CPUs are slow or wrong at it.
        return "float32" if self.options.device == "cpu" else "float16"

    def _set_threads(self, torch: Any, device: str) -> None:
        threads = self.options.torch_threads
        if threads is None and device == "cpu":
            threads = 1  # on shared CPUs extra threads mostly fight over cores
        if threads:
            torch.set_num_threads(threads)

    def _from_pretrained(self, model: str, dtype: Any) -> Any:
        import diffusers

        # diffusers is only partly typed; its pipelines are handled as Any here.
        auto: Any = diffusers.AutoPipelineForText2Image
        plain_sd: Any = diffusers.StableDiffusionPipeline
        kwargs: dict[str, Any] = {"dtype": dtype}
        if not self.options.safety_checker:
            kwargs["safety_checker"] = None  # do not even load it
        try:
            return auto.from_pretrained(model, **kwargs)
        except Exception as auto_error:  # noqa: BLE001 - any failure: try the plain SD class
            log.info("AutoPipelineForText2Image could not load %s (%s); trying "
                     "StableDiffusionPipeline", model, auto_error)
            try:
                return plain_sd.from_pretrained(model, **kwargs)
            except Exception as sd_error:
                raise FatalAgentError("model_error", f"could not load model {model!r}: "
                                                     f"{auto_error}; {sd_error}") from sd_error

    # -- serving -------------------------------------------------------------------------
    def _count_tokens(self, text: str) -> int:
        tokenizer = getattr(self._pipe, "tokenizer", None)
        if tokenizer is None:
            return approx_tokens(text)
        # verbose=False: counting an over-long candidate is not an error worth a warning.
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _budget(self) -> int:
        tokenizer = getattr(self._pipe, "tokenizer", None)
        limit = getattr(tokenizer, "model_max_length", 77) or 77
        return min(int(limit), 77) - 2

    def render(self, request: IllustrationRequest, cancel: threading.Event) -> Rendered:
        return self.render_batch([request], cancel)[0]

    def render_batch(self, requests: list[IllustrationRequest],
                     cancel: threading.Event) -> list[Rendered]:
        """Several pictures of one size, steps and guidance in one pipeline call (one
        seeded generator each, so each picture is the one its seed gives)."""
        if self._pipe is None:
            raise FatalAgentError("internal", "the diffusers backend was not loaded")
        first = requests[0]
        width = round_side(first.width, self._multiple)
        height = round_side(first.height, self._multiple)
        kwargs = self._call_kwargs(first, width, height, cancel)
        if len(requests) > 1:
            budget = self._budget()
            kwargs["prompt"] = [build_prompt(r, self._count_tokens, budget) for r in requests]
            kwargs["negative_prompt"] = [build_negative(r, self._count_tokens, budget)
                                         for r in requests]
            kwargs["generator"] = [self._generator(r.seed) for r in requests]
        try:
            with self._lock, self._torch.inference_mode():
                out = self._pipe(**kwargs)
        except _Cancelled:
            raise FatalAgentError("cancelled", "the request was cancelled") from None
        except (RuntimeError, ValueError) as exc:
            raise RetryableAgentError("model_error", f"the pipeline failed: {exc}") from exc
        flags = getattr(out, "nsfw_content_detected", None) or [False] * len(requests)
        return [self._finish(image, flagged, request, width, height)
                for image, flagged, request in zip(out.images, flags, requests, strict=True)]

    @staticmethod
    def _finish(image: Any, flagged: bool, request: IllustrationRequest, width: int,
                height: int) -> Rendered:
        if flagged:
            log.warning("picture for seed %s flagged by the safety checker; withheld",
                        request.seed)
            return Rendered(placeholder_png(width, height), width, height, nsfw=True)
        image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return Rendered(buffer.getvalue(), image.width, image.height)

    def _generator(self, seed: int) -> Any:
        device = "cpu" if self.options.device.startswith("mps") else self.options.device
        return self._torch.Generator(device).manual_seed(seed)

    def _call_kwargs(self, request: IllustrationRequest, width: int, height: int,
                     cancel: threading.Event) -> dict[str, Any]:
        budget = self._budget()
        kwargs: dict[str, Any] = {
            "prompt": build_prompt(request, self._count_tokens, budget),
            "negative_prompt": build_negative(request, self._count_tokens, budget),
            "num_inference_steps": request.steps,
            "guidance_scale": request.guidance,
            "width": width,
            "height": height,
            "generator": self._generator(request.seed),
        }
        if "callback_on_step_end" in inspect.signature(self._pipe.__call__).parameters:
            def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]
                        ) -> dict[str, Any]:
                if cancel.is_set():
                    raise _Cancelled
                return tensors
            kwargs["callback_on_step_end"] = on_step
        return kwargs

    def close(self) -> None:
        self._pipe = None
        torch = self._torch
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
