"""`storymesh request`: one request to any service, its replies printed as JSON lines."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from storymesh.core import schema
from storymesh.errors import RequestFailed, RequestTimeout
from storymesh.runtime.client import Client
from storymesh.settings import Settings


def _printable(value: Any, save_dir: Path | None, key: str = "value") -> Any:
    """JSON-safe copy of a payload: bytes summarised, or written to `save_dir`."""
    if isinstance(value, (bytes, bytearray)):
        digest = hashlib.sha256(value).hexdigest()[:12]
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            path = save_dir / f"{key}-{digest}.bin"
            path.write_bytes(value)
            return {"file": str(path), "bytes": len(value)}
        return {"bytes": len(value), "sha256": digest}
    if isinstance(value, dict):
        return {k: _printable(v, save_dir, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v, save_dir, f"{key}-{i}") for i, v in enumerate(value)]
    return value


def run_request(
    settings: Settings,
    service: str,
    payload: dict[str, Any],
    *,
    save_dir: Path | None = None,
    show_partials: bool = True,
) -> int:
    """Send one request; print PARTIALs and the FINAL as JSON lines; return the exit code."""
    out = Console(soft_wrap=True)
    with Client(settings.broker, settings=settings.peer_section()) as client:
        try:
            for reply in client.stream(service, payload):
                if reply.final or show_partials:
                    out.print_json(
                        json.dumps(
                            {"final": reply.final, "payload": _printable(reply.payload, save_dir)}
                        )
                    )
        except RequestFailed as exc:
            Console(stderr=True).print(f"[red]error[/red] {exc.code}: {exc.message}")
            return schema.exit_code_for(exc.code)
        except RequestTimeout as exc:
            Console(stderr=True).print(f"[red]timeout[/red] {exc}")
            return schema.EXIT_TIMEOUT
    return schema.EXIT_OK
