"""The publisher agent: a finished story in, a picture book out (PDF, HTML, EPUB).

`PublisherAgent` serves `story.publisher`; `model` parses requests into a `Book` shared by
the `pdf` (reportlab), `html` (self-contained page) and `epub` (ebooklib) renderers, which
are imported only when the agent is set up.
"""

from __future__ import annotations

from storymesh.agents.publisher.agent import PublisherAgent

__all__ = ["PublisherAgent"]
