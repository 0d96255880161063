"""Typed, layered settings for every daemon and command.

Layers, later wins: defaults -> TOML file (`config/storymesh.toml` or `--config PATH`) ->
`STORYMESH_*` environment variables -> CLI flags. Every value is checked when loaded, and
an invalid one raises ConfigError naming the key and the layer it came from, so a daemon
fails at start, not at the first request.

Top-level keys are mesh settings (`heartbeat_interval`, env `STORYMESH_HEARTBEAT_INTERVAL`);
per-agent keys live in a TOML table named after the agent (`[author] model = "..."`, env
`STORYMESH_AUTHOR_MODEL`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from storymesh.errors import ConfigError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_CONFIG = Path("config/storymesh.toml")
ENV_PREFIX = "STORYMESH_"
AGENT_SECTIONS = ("echo", "author", "illustrator", "publisher", "story")


def _endpoint(value: str) -> str | None:
    if not value.startswith(("tcp://", "ipc://", "inproc://")):
        return "must start with tcp://, ipc:// or inproc://"
    return None


def endpoints(value: str) -> list[str]:
    """The endpoints of a `broker` value: one, or a comma-separated list (a broker pair)."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _endpoint_list(value: str) -> str | None:
    found = endpoints(value)
    if not found:
        return "must name at least one endpoint"
    for endpoint in found:
        problem = _endpoint(endpoint)
        if problem:
            return f"{endpoint!r} {problem}"
    return None


def _ha_role(value: str) -> str | None:
    return None if value in ("", "primary", "backup") else "must be primary, backup or empty"


def _optional_endpoint(value: str) -> str | None:
    return None if not value else _endpoint(value)


JOURNAL_SCHEMES = ("postgresql", "postgres")  # besides a file path, which is SQLite
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def journal_scheme(target: str) -> str | None:
    """The `scheme` of a `scheme://...` journal setting, or None for a (SQLite) file path."""
    found = _SCHEME.match(target.strip())
    return found.group(1).lower() if found else None


def _journal(value: str) -> str | None:
    scheme = journal_scheme(value)
    if scheme is None or scheme in JOURNAL_SCHEMES:
        return None
    return (f"unknown scheme {scheme}://; use a file path for SQLite or a "
            "postgresql://USER@HOST/DB URL")


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else "must be >= 1"


def _choice(*allowed: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"

    return check


def _formats(value: str) -> str | None:
    # The list lives in storymesh.vocabulary, which settings does not import (same layer).
    chosen = [f.strip() for f in value.split(",") if f.strip()]
    bad = [f for f in chosen if f not in ("pdf", "html", "epub")]
    if bad or not chosen:
        return "must be a comma-separated list of pdf, html, epub"
    return None


def _host_port(value: str) -> str | None:
    """'' (off), PORT, :PORT, HOST:PORT or [V6]:PORT."""
    port = value.rpartition(":")[2]
    if not value or (port.isdigit() and int(port) <= 65535):
        return None
    return "must be empty (off), PORT or HOST:PORT"


def parse_bind(text: str) -> tuple[str, int]:
    """A metrics bind: `PORT`, `:PORT`, `HOST:PORT` or `[V6]:PORT` -> (host, port), on
    loopback unless a host is named; ConfigError otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = "", text.strip()
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"metrics bind {text!r}: expected [HOST:]PORT with PORT 0-65535")
    return host, int(port)


def _meta(check: Callable[[Any], str | None] | None = None, doc: str = "") -> dict[str, Any]:
    return {"check": check, "doc": doc}


@dataclass(frozen=True)
class AgentSettings:
    """Settings of one agent kind (a TOML table such as `[author]`)."""

    backend: str = field(
        default="embedded", metadata=_meta(doc="embedded | transformers | diffusers | reportlab")
    )
    model: str = field(default="", metadata=_meta(doc="hub id or local folder ('' = none)"))
    device: str = field(default="cpu", metadata=_meta(doc="cpu, cuda, cuda:1, auto"))
    dtype: str = field(
        default="auto", metadata=_meta(_choice("auto", "float32", "float16", "bfloat16"))
    )
    slots: int = field(
        default=1, metadata=_meta(_at_least_one, "worker connections around one model")
    )
    torch_threads: int = field(default=1, metadata=_meta(_at_least_one, "torch CPU threads"))
    metrics_bind: str = field(
        default="",
        metadata=_meta(
            _host_port,
            "the agent's Prometheus endpoint, [HOST:]PORT ('' = off; host defaults to 127.0.0.1)",
        ),
    )
    max_new_tokens: int = field(
        default=512, metadata=_meta(_at_least_one, "author: tokens per generation")
    )
    temperature: float = field(
        default=0.8, metadata=_meta(doc="author: sampling temperature (0 = greedy)")
    )
    top_p: float = field(default=0.95, metadata=_meta(_positive, "author: nucleus sampling"))
    steps: int = field(default=25, metadata=_meta(_at_least_one, "illustrator: diffusion steps"))
    guidance: float = field(
        default=7.5, metadata=_meta(doc="illustrator: classifier-free guidance")
    )
    safety_checker: bool = field(
        default=True, metadata=_meta(doc="illustrator: keep the model's safety checker on")
    )
    formats: str = field(
        default="pdf,html,epub",
        metadata=_meta(_formats, "publisher: formats made for a request naming none"),
    )
    page_size: str = field(
        default="A4", metadata=_meta(_choice("A4", "letter", "square"), "publisher: PDF page")
    )
    font_path: str = field(
        default="",
        metadata=_meta(doc="publisher: TrueType font for PDFs ('' = DejaVu Sans, shipped)"),
    )


@dataclass(frozen=True)
class GatewaySettings:
    """The HTTP gateway (`storymesh gateway`, the TOML table `[gateway]`)."""

    http: str = field(
        default="127.0.0.1:8080",
        metadata=_meta(_host_port, "HOST:PORT the gateway listens on (HTTP)"),
    )
    api_keys: str = field(
        default="", metadata=_meta(doc="API keys file ('' = no keys: loopback only)")
    )
    allow_anonymous: bool = field(
        default=False, metadata=_meta(doc="serve a non-loopback address without API keys")
    )
    max_body_bytes: int = field(
        default=64 * 1024, metadata=_meta(_at_least_one, "largest request body (413 above)")
    )
    submit_rate: float = field(
        default=5.0, metadata=_meta(_positive, "submissions a second per key (or address)")
    )
    submit_burst: int = field(
        default=20, metadata=_meta(_at_least_one, "submissions a key may make at once")
    )
    max_streams: int = field(
        default=50, metadata=_meta(_at_least_one, "open event streams (SSE) at once")
    )
    token_ttl: float = field(
        default=900.0, metadata=_meta(_positive, "seconds a URL token stays valid")
    )
    mesh_timeout: float = field(
        default=10.0, metadata=_meta(_positive, "seconds to wait for the mesh per request")
    )
    mesh_threads: int = field(
        default=8, metadata=_meta(_at_least_one, "threads that carry calls to the mesh")
    )
    keep_alive_timeout: float = field(
        default=5.0, metadata=_meta(_positive, "seconds an idle HTTP connection stays open")
    )
    max_connections: int = field(
        default=1000, metadata=_meta(_at_least_one, "open HTTP connections before 503")
    )
    ping_interval: float = field(
        default=15.0, metadata=_meta(_positive, "seconds between keep-alive comments on a stream")
    )


# --- sections: what each component receives ----------------------------------------------
#
# Each component gets only the keys it reads, as a frozen section built from a loaded
# `Settings` (`settings.broker_section()` and so on). A section's field names are the setting
# keys themselves, so the TOML tables, STORYMESH_* variables and CLI flags stay the same keys.


@dataclass(frozen=True)
class BrokerSettings:
    """What the broker (its pure core and its server) reads: limits, heartbeats, bind, keys."""

    bind: str
    heartbeat_interval: float
    liveness: int
    busy_timeout: float
    max_attempts: int
    queue_limit: int
    client_queue_limit: int
    service_wait: float
    max_message_bytes: int
    max_frames: int
    hwm: int
    client_backlog_bytes: int
    metrics_bind: str
    curve_secret: str
    allow_dir: str
    roles: str
    ha: str = ""
    ha_bind: str = ""
    ha_peer: str = ""
    native_wire: bool = True

    @property
    def liveness_timeout(self) -> float:
        return self.heartbeat_interval * self.liveness


@dataclass(frozen=True)
class PeerSettings:
    """What a peer connecting to the broker reads: a client or a worker runtime."""

    broker: str
    heartbeat_interval: float
    liveness: int
    request_timeout: float
    retries: int
    reconnect_max: float
    drain_grace: float
    strict_mdp: bool
    max_message_bytes: int
    hwm: int
    curve_secret: str
    broker_key: str

    @property
    def liveness_timeout(self) -> float:
        return self.heartbeat_interval * self.liveness


@dataclass(frozen=True)
class StorySettings:
    """What the story service reads; `peer` is how its engine and workers reach the broker."""

    journal: str
    retention_days: float
    retention_bytes: int
    lease_ttl: float
    watch_slots: int
    step_timeout: float
    step_attempts: int
    picture_size: int
    peer: PeerSettings


@dataclass(frozen=True)
class Settings:
    """All settings; construct with `load()`, pass explicitly, never through globals."""

    bind: str = field(default=DEFAULT_ENDPOINT, metadata=_meta(_endpoint, "what the broker binds"))
    broker: str = field(
        default=DEFAULT_ENDPOINT,
        metadata=_meta(
            _endpoint_list,
            "what agents and clients connect to; a broker pair: both, comma-separated",
        ),
    )
    ha: str = field(
        default="",
        metadata=_meta(
            _ha_role, "broker pair: this broker's role, primary or backup ('' = alone)"
        ),
    )
    ha_bind: str = field(
        default="",
        metadata=_meta(_optional_endpoint, "broker pair: the state endpoint this broker binds"),
    )
    ha_peer: str = field(
        default="",
        metadata=_meta(_optional_endpoint, "broker pair: the other broker's state endpoint"),
    )
    heartbeat_interval: float = field(
        default=2.5, metadata=_meta(_positive, "seconds between heartbeats")
    )
    liveness: int = field(
        default=4, metadata=_meta(_at_least_one, "missed heartbeats before a peer is dead")
    )
    busy_timeout: float = field(
        default=900.0,
        metadata=_meta(_positive, "seconds a busy non-heartbeating worker may hold a request"),
    )
    max_attempts: int = field(
        default=3, metadata=_meta(_at_least_one, "dispatches of one request before worker_lost")
    )
    queue_limit: int = field(
        default=1000, metadata=_meta(_at_least_one, "queued requests per service before busy")
    )
    client_queue_limit: int = field(
        default=200,
        metadata=_meta(_at_least_one, "queued requests of one client per service before busy"),
    )
    service_wait: float = field(
        default=30.0,
        metadata=_meta(_positive, "seconds a request waits for a service with no worker"),
    )
    max_message_bytes: int = field(
        default=256 * 1024 * 1024, metadata=_meta(_at_least_one, "ZMQ_MAXMSGSIZE per frame")
    )
    max_frames: int = field(default=80, metadata=_meta(_at_least_one, "frames per message"))
    hwm: int = field(default=100_000, metadata=_meta(_at_least_one, "ZeroMQ high-water marks"))
    client_backlog_bytes: int = field(
        default=256 * 1024 * 1024,
        metadata=_meta(
            _at_least_one,
            "broker: bytes one client's queued requests and unread replies may pin",
        ),
    )
    native_wire: bool = field(
        default=True,
        metadata=_meta(doc="broker: use the compiled socket helper where it is built"),
    )
    request_timeout: float = field(
        default=60.0, metadata=_meta(_positive, "client seconds to wait per attempt")
    )
    retries: int = field(default=3, metadata=_meta(_at_least_one, "client attempts per request"))
    story_wait: float = field(
        default=60.0,
        metadata=_meta(
            _positive, "`storymesh story`: seconds to wait for the broker and the story service"
        ),
    )
    reconnect_max: float = field(
        default=5.0, metadata=_meta(_positive, "worker reconnect backoff cap, seconds")
    )
    drain_grace: float = field(
        default=30.0, metadata=_meta(_positive, "seconds an agent finishes its job on SIGTERM")
    )
    strict_mdp: bool = field(
        default=False, metadata=_meta(doc="workers send READY without the metadata frame")
    )
    log_level: str = field(
        default="info", metadata=_meta(_choice("debug", "info", "warning", "error"))
    )
    log_format: str = field(default="text", metadata=_meta(_choice("text", "json")))
    journal: str = field(
        default="~/.local/state/storymesh/journal.db",
        metadata=_meta(_journal, "story journal: a SQLite file path, or postgresql://USER@HOST/DB"),
    )
    retention_days: float = field(
        default=30.0, metadata=_meta(_positive, "finished stories older than this are pruned")
    )
    retention_bytes: int = field(
        default=2 * 1024**3,
        metadata=_meta(
            _at_least_one, "journal size above which the oldest finished stories are pruned"
        ),
    )
    lease_ttl: float = field(
        default=30.0,
        metadata=_meta(_positive, "seconds a story instance owns a story without renewing"),
    )
    watch_slots: int = field(
        default=16, metadata=_meta(_at_least_one, "story.watch connections of a story service")
    )
    step_timeout: float = field(
        default=900.0,
        metadata=_meta(_positive, "seconds one author/illustrator/publisher step may take"),
    )
    step_attempts: int = field(
        default=3,
        metadata=_meta(_at_least_one, "tries of a failing story step before the story fails"),
    )
    picture_size: int = field(
        default=512, metadata=_meta(_at_least_one, "illustration width and height in pixels")
    )
    metrics_bind: str = field(
        default="",
        metadata=_meta(
            _host_port,
            "broker Prometheus endpoint, [HOST:]PORT ('' = off; host defaults to 127.0.0.1)",
        ),
    )
    curve_secret: str = field(
        default="",
        metadata=_meta(doc="own CURVE secret key file, NAME.key_secret ('' = plain, no keys)"),
    )
    broker_key: str = field(
        default="",
        metadata=_meta(doc="agents and clients: the broker's CURVE public key file ('' = plain)"),
    )
    allow_dir: str = field(
        default="",
        metadata=_meta(doc="broker with keys: folder of the public keys (*.key) it accepts"),
    )
    roles: str = field(
        default="",
        metadata=_meta(
            doc="broker with keys: roles TOML file ('' = every allowed key has every role)"
        ),
    )
    echo: AgentSettings = field(default_factory=AgentSettings)
    author: AgentSettings = field(default_factory=AgentSettings)
    illustrator: AgentSettings = field(default_factory=AgentSettings)
    publisher: AgentSettings = field(default_factory=lambda: AgentSettings(backend="reportlab"))
    story: AgentSettings = field(default_factory=AgentSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def liveness_timeout(self) -> float:
        return self.heartbeat_interval * self.liveness

    def broker_section(self) -> BrokerSettings:
        return _section(BrokerSettings, self)

    def peer_section(self) -> PeerSettings:
        return _section(PeerSettings, self)

    def story_section(self) -> StorySettings:
        return _section(StorySettings, self, peer=self.peer_section())

    def agent(self, name: str) -> AgentSettings:
        if name not in AGENT_SECTIONS:
            raise ConfigError(f"unknown agent {name!r}; known: {', '.join(AGENT_SECTIONS)}")
        value: AgentSettings = getattr(self, name)
        return value


_S = typing.TypeVar("_S")


def _section(cls: type[_S], settings: Settings, **nested: Any) -> _S:
    """A section of `settings`: every field of `cls` is the same-named key (or `nested`)."""
    assert dataclasses.is_dataclass(cls)
    values = {f.name: nested[f.name] if f.name in nested else getattr(settings, f.name)
              for f in fields(cls)}
    return cls(**values)


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _convert(raw: Any, typ: Any, key: str, source: str) -> Any:
    """Convert a TOML/env/flag value to the field's type; ConfigError names key and source."""
    if isinstance(typ, types.UnionType):
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    try:
        if typ is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if typ is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("expected an integer")
            return int(raw)
        if typ is float:
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if typ is str:
            if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
                raise ValueError("expected a string")
            return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value {raw!r} for {key} (from {source}): {exc}") from None
    raise ConfigError(f"{key} (from {source}) has an unsupported type")


def _apply(
    cls: type,
    current: Any,
    values: Mapping[str, Any],
    source: str,
    prefix: str,
    sources: dict[str, str],
) -> Any:
    """Return `current` updated from `values` (one layer), checking each value."""
    names = {f.name: f for f in fields(cls) if f.name != "sources"}
    changes: dict[str, Any] = {}
    for raw_key, raw in values.items():
        key = raw_key.replace("-", "_")
        full = f"{prefix}{key}"
        f = names.get(key)
        if f is None:
            raise ConfigError(f"unknown setting {full!r} (from {source})")
        typ = _field_type(cls, key)
        if isinstance(typ, type) and dataclasses.is_dataclass(typ):
            if not isinstance(raw, Mapping):
                raise ConfigError(f"{full} (from {source}) must be a table")
            changes[key] = _apply(typ, getattr(current, key), raw, source, f"{full}.", sources)
            continue
        value = _convert(raw, typ, full, source)
        check = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"invalid value {raw!r} for {full} (from {source}): {problem}")
        changes[key] = value
        sources[full] = source
    return replace(current, **changes)


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    top = {f.name for f in fields(Settings)} - {"sources", "gateway", *AGENT_SECTIONS}
    agent_keys = {f.name for f in fields(AgentSettings)}
    gateway_keys = {f.name for f in fields(GatewaySettings)}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key in top:
            layer[key] = value
            continue
        section, _, sub = key.partition("_")
        if ((section in AGENT_SECTIONS and sub in agent_keys)
                or (section == "gateway" and sub in gateway_keys)):
            layer.setdefault(section, {})[sub] = value
        elif key not in ("config",):
            raise ConfigError(f"unknown setting in environment variable {name}")
    return layer


def load(
    config: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from the four layers. `flags` holds only the CLI flags actually given
    (None values are skipped); nested keys use dotted names ("author.model")."""
    env = os.environ if env is None else env
    sources: dict[str, str] = {}
    settings = Settings()
    # A file named by --config or STORYMESH_CONFIG must exist; only the default may be absent.
    explicit = config or env.get("STORYMESH_CONFIG")
    path = Path(explicit) if explicit else DEFAULT_CONFIG
    if explicit or path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc}") from None
        settings = _apply(Settings, settings, data, str(path), "", sources)
    settings = _apply(Settings, settings, _env_layer(env), "environment", "", sources)
    if flags:
        nested: dict[str, Any] = {}
        for key, value in flags.items():
            if value is None:
                continue
            section, dot, sub = key.partition(".")
            if dot:
                nested.setdefault(section, {})[sub] = value
            else:
                nested[key] = value
        settings = _apply(Settings, settings, nested, "command line", "", sources)
    result: Settings = replace(settings, sources=sources)
    return result


def describe(settings: Settings) -> list[tuple[str, Any, str]]:
    """(key, value, source) for every setting, for `storymesh config show`."""
    rows: list[tuple[str, Any, str]] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in fields(obj):
            if f.name == "sources":
                continue
            value = getattr(obj, f.name)
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, f"{key}.")
            else:
                rows.append((key, value, settings.sources.get(key, "default")))

    walk(settings, "")
    return rows
