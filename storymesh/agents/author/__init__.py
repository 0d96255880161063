"""The author agent (`story.author`): outlines and chapters for picture books.

Two backends: `embedded`, an offline storyteller that needs no model weights, and
`transformers`, a causal language model from a hub id or a local folder (the `ml` extra).
Only `AuthorAgent` is public; importing this package never imports torch.
"""

from __future__ import annotations

from storymesh.agents.author.agent import BACKENDS, AuthorAgent, AuthorOptions

__all__ = ["BACKENDS", "AuthorAgent", "AuthorOptions"]
