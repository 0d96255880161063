"""What the mesh's authors can write, asked at submission: a story in a language that no
author writes is refused at once with `bad_request`, instead of failing at its outline.

English needs no question: every author writes it. For another language the story service
asks `story.author` op `languages` (FINAL `{"backend", "languages"}`, `["*"]` for any) in one
short request, and keeps a definite answer for `ttl` seconds. Whenever it cannot know it
accepts: no author registered yet, the broker or every author too busy to answer in time, an
author that does not know the op. The outline step then fails with the author's own clear
`bad_request` if the author turns out not to write the language. A mesh should run authors
of one backend: the answer is one author's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import zmq

from storymesh.errors import RequestFailed, RequestTimeout, StorymeshError
from storymesh.runtime.client import Client
from storymesh.vocabulary import bad, primary_language

log = logging.getLogger(__name__)

AUTHOR: Final = "story.author"
ANY: Final = "*"
ASK_TIMEOUT: Final = 2.0   # seconds the submission waits for an author's answer
TTL: Final = 30.0          # seconds a definite answer is kept


@dataclass(frozen=True, slots=True)
class Languages:
    """An author's answer to op `languages`."""

    backend: str
    languages: tuple[str, ...]

    def writes(self, tag: str) -> bool:
        return ANY in self.languages or primary_language(tag) in self.languages

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> Languages | None:
        """The answer read from a FINAL payload; None when it is not one."""
        backend, languages = payload.get("backend"), payload.get("languages")
        if not isinstance(languages, list) or not all(isinstance(x, str) for x in languages):
            return None
        return cls(str(backend or "unknown"), tuple(x.lower() for x in languages))


def ask_languages(client: Client) -> Languages | None:
    """Ask the authors what they write (one attempt of the client's timeout); None when
    there is no author, no answer in time, or no answer that makes sense."""
    if client.service_available(AUTHOR) is not True:
        return None
    try:
        final = client.call(AUTHOR, {"op": "languages"})
    except (RequestFailed, RequestTimeout) as exc:
        log.info("the authors did not say which languages they write (%s); accepting", exc)
        return None
    return Languages.of(final.payload)


class AuthorLanguages:
    """Checks a story's language against what the authors write (`check`), asking them
    through `ask` at most once per `ttl` seconds while their answer is definite."""

    def __init__(self, ask: Callable[[], Languages | None], *, ttl: float = TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ask = ask
        self._ttl = ttl
        self._clock = clock
        self._known: tuple[float, Languages] | None = None

    def check(self, language: str) -> None:
        """Raise `bad_request` when the authors are known not to write `language`."""
        if primary_language(language) == "en":
            return
        known = self._answer()
        if known is None or known.writes(language):
            return
        raise bad(f"language {language!r}: the mesh's author (backend {known.backend}) writes "
                  f"{', '.join(known.languages)} only; the embedded storyteller writes English "
                  "only, so run the author with the transformers backend (backend = "
                  "\"transformers\" and a model in the [author] table) for books in other "
                  "languages")

    def _answer(self) -> Languages | None:
        now = self._clock()
        if self._known is not None and now - self._known[0] < self._ttl:
            return self._known[1]
        try:
            answer = self._ask()
        except (StorymeshError, zmq.ZMQError) as exc:  # no broker to ask: accept
            log.info("could not ask the authors for their languages: %s", exc)
            answer = None
        self._known = None if answer is None else (now, answer)
        return answer
