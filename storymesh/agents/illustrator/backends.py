"""The illustrator's backend interface, the embedded backend, and the backend factory.

A backend loads once (`load() -> AgentInfo`), turns a validated request into a `Rendered`
picture, and releases what it holds in `close()`. The diffusers backend lives in its own
module and is imported only when chosen, so the embedded default never imports torch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from storymesh.agents.illustrator.embedded import painter as embedded
from storymesh.agents.illustrator.request import IllustrationRequest
from storymesh.runtime.agent import AgentInfo

BACKENDS = ("embedded", "diffusers")
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A finished picture: PNG bytes and its real size (a model may round the size), and
    what the painter drew each figure as, where it knows (`None`: not reported)."""

    png: bytes
    width: int
    height: int
    nsfw: bool = False
    drawn_as: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """What the agent's constructor passes to a backend."""

    model: str | None = None
    device: str = "cpu"
    dtype: str = "auto"
    safety_checker: bool = True
    torch_threads: int | None = None


class Backend(Protocol):
    name: str

    def load(self) -> AgentInfo: ...

    def render(self, request: IllustrationRequest, cancel: threading.Event) -> Rendered: ...

    def close(self) -> None: ...


class EmbeddedBackend:
    """The Pillow painter: no weights, no GPU, deterministic per seed."""

    name = "embedded"

    def load(self) -> AgentInfo:
        return AgentInfo(backend=self.name, model="storymesh-painter", device="cpu")

    def render(self, request: IllustrationRequest, cancel: threading.Event) -> Rendered:
        png, drawn_as = embedded.render(request)
        return Rendered(png, request.width, request.height, drawn_as=drawn_as)

    def close(self) -> None:
        """Nothing to release."""


def make_backend(name: str, options: BackendOptions) -> Backend:
    """The backend called `name` (already checked against BACKENDS)."""
    if name == "diffusers":
        from storymesh.agents.illustrator.diffusers_backend import DiffusersBackend

        return DiffusersBackend(options)
    return EmbeddedBackend()
