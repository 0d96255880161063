"""The `storymesh` command: typer wiring (app.py) and what it shows a person (console.py)."""

from __future__ import annotations


def main() -> None:
    """Entry point of the `storymesh` script and of `python -m storymesh`."""
    from storymesh.cli.app import main as run

    run()
