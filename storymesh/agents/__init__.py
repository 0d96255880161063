"""The agents: author, illustrator, publisher and the echo probe, each behind the worker
runtime's interface (`storymesh.runtime.agent`), and the registry that builds them by name."""
