"""The package's layers hold: the import-linter contracts in pyproject.toml are kept, and the
pure core (with everything below it) imports without zmq, its package `__init__`s included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PURE = [
    "storymesh.core.mdp", "storymesh.core.envelope", "storymesh.core.schema",
    "storymesh.core.broker", "storymesh.core.workers", "storymesh.core.fairqueue",
    "storymesh.core.policy", "storymesh.vocabulary", "storymesh.settings",
    "storymesh.plumbing.logs", "storymesh.plumbing.ratelog", "storymesh.plumbing.signals",
    "storymesh.plumbing.metrics_http",
    "storymesh.plumbing.sdnotify", "storymesh.errors",
]


def _imported_after(modules: list[str]) -> set[str]:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


def test_import_linter_contracts_are_kept() -> None:
    # Given the contracts in pyproject.toml (layers, zmq-free core, broker | agents)
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None, "import-linter is part of the dev extra"
    # When import-linter checks the package
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    # Then every contract is kept
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


@pytest.mark.parametrize("module", PURE)
def test_pure_core_leaves_zmq_out(module: str) -> None:
    # When one module of the pure core (or below it) is imported on its own
    loaded = _imported_after([module])
    # Then neither zmq nor a heavy library came with it
    assert not {"zmq", "torch", "typer", "rich"} & loaded


def test_importing_the_package_is_light() -> None:
    # The package's lazy exports: `import storymesh` pulls in no socket or model library
    loaded = _imported_after(["storymesh"])
    assert not {"zmq", "torch", "typer", "rich"} & loaded
