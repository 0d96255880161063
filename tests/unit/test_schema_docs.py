"""docs/protocol.md and the code must not drift: every error code (with its retryable flag and
exit code), header key, status, limit, snapshot key and READY metadata key the code defines is
documented, and the documented values are the code's values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgpack
import pytest

from storymesh.core import mdp, schema
from storymesh.core.broker import BrokerCore
from storymesh.runtime.agent import AgentInfo
from storymesh.runtime.requests import ready_meta
from testkit.mesh import fast_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def section(doc: str, title: str) -> str:
    """The text of the section whose heading contains `title`, up to the next heading."""
    match = re.search(rf"^#+ [^\n]*{re.escape(title)}[^\n]*\n(.*?)(?=^#+ |\Z)", doc,
                      re.MULTILINE | re.DOTALL)
    assert match, f"docs/protocol.md has no section titled {title!r}"
    return match.group(1)


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by their first cell (backticks stripped)."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= {"|", "-", " "}:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def mentioned(text: str, word: str) -> bool:
    return f"`{word}`" in text or re.search(rf"\b{re.escape(word)}\b", text) is not None


def test_every_error_code_is_documented_with_its_retryable_flag_and_exit_code(doc: str) -> None:
    rows = table_rows(section(doc, "Error codes"))
    for code, (_meaning, retryable, exit_code) in schema.ERROR_CODES.items():
        assert code in rows, f"error code {code!r} missing from docs/protocol.md"
        _, doc_retryable, doc_exit = rows[code]
        assert doc_retryable == ("yes" if retryable else "no"), code
        assert int(doc_exit) == exit_code == schema.exit_code_for(code), code
    documented = {k for k in rows if k != "code"}
    assert documented == set(schema.ERROR_CODES), "docs list codes schema.py does not have"


def test_broker_error_codes_are_the_first_listed(doc: str) -> None:
    rows = [k for k in table_rows(section(doc, "Error codes")) if k != "code"]
    assert tuple(rows[:len(schema.BROKER_ERROR_CODES)]) == schema.BROKER_ERROR_CODES


def test_other_exit_codes_are_documented(doc: str) -> None:
    text = section(doc, "Error codes")
    for value in (schema.EXIT_OK, schema.EXIT_DEGRADED, schema.EXIT_DOWN, schema.EXIT_TIMEOUT):
        assert f"`{value}`" in text


def test_every_header_key_is_documented(doc: str) -> None:
    rows = table_rows(section(doc, "Header keys"))
    for key in schema.HEADER_KEYS:
        assert key in rows, f"header key {key!r} missing from docs/protocol.md"
    assert {k for k in rows if k != "key"} == set(schema.HEADER_KEYS)
    assert schema.FRAME_REF in doc
    assert f'{{"{schema.FRAME_REF}": k}}' in doc


def test_every_status_is_documented(doc: str) -> None:
    text = section(doc, "Story status")
    for status in schema.Status:
        assert f"`{status.value}`" in text


def test_every_limit_is_documented_with_its_value(doc: str) -> None:
    rows = table_rows(section(doc, "Limits"))
    limits = {name: value for name, value in vars(schema).items() if name.startswith("MAX_")}
    assert limits, "schema.py defines no MAX_* limits?"
    for name, value in limits.items():
        assert name in rows, f"limit {name} missing from docs/protocol.md"
        assert rows[name][0].split()[0] == str(value), name


def test_the_envelope_version_is_documented(doc: str) -> None:
    assert f"currently `{schema.ENVELOPE_VERSION}`" in section(doc, "Header keys")


def test_every_snapshot_key_is_documented(doc: str) -> None:
    # Given a real snapshot with a service, a busy worker with metadata and a request
    core = BrokerCore(fast_settings().broker_section(), 0.0)
    core.on_frames(b"w1", mdp.encode(mdp.Ready(b"echo", msgpack.packb({"hb_busy": True}))), 0.0)
    core.on_frames(b"c1", mdp.encode(mdp.ClientRequest(b"echo", (b"foreign",))), 0.0)
    snap: dict[str, Any] = core.snapshot(1.0)
    text = section(doc, "mmi.storymesh.snapshot")
    # Then every key at every level is named in the docs
    assert f"`{snap['version']}`" in text
    keys = set(snap) | set(snap["services"]["echo"]) | set(snap["settings"])
    worker = snap["workers"][0]
    keys |= set(worker) | set(worker["request"])
    for key in sorted(keys):
        assert mentioned(text, key), f"snapshot key {key!r} missing from docs/protocol.md"
    for counter in snap["counters"]:
        assert f"`{counter}`" in text, f"counter {counter!r} missing from docs/protocol.md"


def test_every_ready_metadata_key_is_documented(doc: str) -> None:
    meta = msgpack.unpackb(ready_meta(AgentInfo("embedded", "m", "cpu", "float32"), 2))
    rows = table_rows(section(doc, "READY metadata"))
    for key in meta:
        assert key in rows, f"READY metadata key {key!r} missing from docs/protocol.md"


def test_mmi_codes_and_dialect_headers_are_documented(doc: str) -> None:
    for word in ("mmi.service", "mmi.storymesh.snapshot", "200", "404", "501",
                 "MDPC01", "MDPC02", "MDPW01", "MDPW02"):
        assert f"`{word}`" in doc
    for dialect in mdp.Dialect:
        assert f"`{dialect.value}`" in section(doc, "MDP dialects")
