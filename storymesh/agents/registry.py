"""Agent names -> factories, so the CLI and `storymesh up` build agents by name.

Imports are lazy: building the echo agent never imports the author's ML backend.
"""

from __future__ import annotations

from collections.abc import Callable

from storymesh.errors import ConfigError
from storymesh.runtime.agent import Agent
from storymesh.settings import Settings


def _echo(settings: Settings) -> Agent:
    from storymesh.agents.echo import EchoAgent
    return EchoAgent()


def _author(settings: Settings) -> Agent:
    from storymesh.agents.author import AuthorAgent
    a = settings.author
    return AuthorAgent(backend=a.backend, model=a.model or None, device=a.device, dtype=a.dtype,
                       torch_threads=a.torch_threads, max_new_tokens=a.max_new_tokens,
                       temperature=a.temperature, top_p=a.top_p)


def _illustrator(settings: Settings) -> Agent:
    from storymesh.agents.illustrator import IllustratorAgent
    a = settings.illustrator
    return IllustratorAgent(backend=a.backend, model=a.model or None, device=a.device,
                            dtype=a.dtype, torch_threads=a.torch_threads, steps=a.steps,
                            guidance=a.guidance, width=settings.picture_size,
                            height=settings.picture_size, safety_checker=a.safety_checker)


def _publisher(settings: Settings) -> Agent:
    from storymesh.agents.publisher import PublisherAgent
    section = settings.publisher
    return PublisherAgent(formats=section.formats, page_size=section.page_size,
                          font_path=section.font_path or None)


FACTORIES: dict[str, Callable[[Settings], Agent]] = {
    "echo": _echo,
    "author": _author,
    "illustrator": _illustrator,
    "publisher": _publisher,
}


def build_agent(name: str, settings: Settings) -> Agent:
    """The agent called `name`, configured from its settings section."""
    factory = FACTORIES.get(name)
    if factory is None:
        raise ConfigError(f"unknown agent {name!r}; choose one of {', '.join(FACTORIES)}")
    return factory(settings)
