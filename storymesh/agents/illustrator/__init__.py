"""The illustrator agent (`story.illustrator`): a picture for each chapter of a story.

Backends: `embedded` (default; a procedural Pillow painter, no weights) and `diffusers`
(a text-to-image pipeline from a hub id or local folder; needs `pip install 'storymesh[ml]'`).
Importing this package never imports torch.
"""

from __future__ import annotations

from storymesh.agents.illustrator.agent import IllustratorAgent
from storymesh.agents.illustrator.backends import BACKENDS

__all__ = ["BACKENDS", "IllustratorAgent"]
