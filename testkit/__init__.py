"""Test support, outside the `storymesh` package (the wheel does not ship it): sleep-based
agents, the mesh harness, tiny offline models. Importable by tests and benchmarks with the
repository root on sys.path (pytest's `pythonpath`, or PYTHONPATH for spawned daemons)."""
