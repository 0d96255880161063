"""The story queries as JSON: what `storymesh list|status|history --json` print.

The HTTP gateway answers the same `story.query` ops on its own asynchronous mesh, with the
caller's key as owner (`GET /stories`, `/stories/{id}`, `/stories/{id}/history`; its history
answer has no `corr`, see docs/http.md). Each function takes a `StoryClient` and returns a
JSON-safe dict; errors are the client's (`RequestFailed` with the mesh's code,
`RequestTimeout`).
"""

from __future__ import annotations

from typing import Any

from storymesh.story.api import StoryClient


def stories_json(client: StoryClient, limit: int = 50) -> dict[str, Any]:
    """`{"stories": [{"corr", "status", "title", "created", "updated", "plot"}, ...]}`,
    newest first."""
    return {"stories": client.list(limit)}


def story_status_json(client: StoryClient, corr: str) -> dict[str, Any]:
    """The `status` query's keys: corr, status, title, error, steps, created, updated, owner."""
    return client.status(corr)


def story_history_json(client: StoryClient, corr: str) -> dict[str, Any]:
    """`{"corr", "history": [{"sender", "receiver", "message_type", "time", "id"}, ...]}`."""
    return {"corr": corr, "history": client.history(corr)}
