"""The story queries as JSON: what `storymesh list|status|history --json` print and what the
HTTP gateway serves (`GET /stories`, `/stories/{id}`, `/stories/{id}/history`).

One function per answer, so the command line and the gateway cannot drift apart. Each takes
a `StoryClient` and returns a JSON-safe dict; errors are the client's (`RequestFailed` with
the mesh's code, `RequestTimeout`).
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
