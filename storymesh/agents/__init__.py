"""Agent daemons: the agent interface, the worker runtime and the built-in agents."""
