"""storymesh: AI story agents as long-lived daemons on a ZeroMQ Majordomo broker."""

__version__ = "0.1.0"

__all__ = ["DistributedOrchestrator", "StoryClient", "create_story", "get_message_history",
           "get_task_status"]


def __getattr__(name: str) -> object:
    # Lazy, so `import storymesh` stays cheap for the broker and the CLI.
    if name == "DistributedOrchestrator":
        from storymesh.story.orchestrator import DistributedOrchestrator
        return DistributedOrchestrator
    if name in __all__:
        from storymesh.story import api
        return getattr(api, name)
    raise AttributeError(f"module 'storymesh' has no attribute {name!r}")
