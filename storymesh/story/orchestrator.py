"""The original design's programmatic names: `DistributedOrchestrator`, thin over `StoryClient`.

    from storymesh import DistributedOrchestrator
    orchestrator = DistributedOrchestrator()            # or DistributedOrchestrator("tcp://...")
    task = orchestrator.create_story({"plot": "A brave mouse", "themes": ["courage"]})
    orchestrator.get_task_status(task["correlation_id"])
    orchestrator.get_message_history(task["correlation_id"])

With `broker=None` it runs the whole mesh in this process (like `create_story`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storymesh.story import api


class DistributedOrchestrator:
    """Create stories and ask about them, through a broker or an in-process mesh."""

    def __init__(self, broker: str | None = None) -> None:
        self.broker = broker

    def create_story(self, idea: dict[str, Any] | str, *, wait: bool = True,
                     out_dir: str | Path = "storymesh-output") -> dict[str, Any]:
        """Make a story from `idea` (the story request keys, or a plot). Waits for the book
        by default (`correlation_id`, `status`, `title`, `publications`); with `wait=False`
        returns at once with `correlation_id` and `status` "accepted"."""
        request = {"plot": idea} if isinstance(idea, str) else dict(idea)
        if wait:
            return api.create_story(request, broker=self.broker, out_dir=out_dir)
        corr = api.submit_story(request, broker=self.broker)
        return {"correlation_id": corr, "corr": corr, "status": "accepted"}

    def get_task_status(self, correlation_id: str) -> dict[str, Any]:
        return api.get_task_status(correlation_id, broker=self.broker)

    def get_message_history(self, correlation_id: str) -> list[dict[str, Any]]:
        return api.get_message_history(correlation_id, broker=self.broker)
