"""The story service: orchestrator, journal and client API."""
