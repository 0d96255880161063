"""CurveZMQ keys, the broker's allow-list and roles, and its ZAP handler.

Keys are pyzmq `zmq.auth` certificate files: `NAME.key` (public) and `NAME.key_secret`
(public + secret). With keys configured:

- the broker is a CURVE server; a ZAP handler (`ZapHandler`, polled by the broker's own
  loop, so it needs no thread) accepts a peer only if its public key is one of the `*.key`
  files in the allow-list folder, and names the peer after that file's stem: the broker's
  ROUTER then sees it as the frame property `User-Id`;
- a `Policy` maps each key name to its roles (`KeyRoles`), from an optional roles file:

      [default]                       # keys on the allow-list that are not named below
      roles = ["client"]
      [keys.illustrator-gpu1]
      roles = ["worker"]
      services = ["story.illustrator"]    # fnmatch patterns it may register
      [keys.story]
      roles = ["worker", "client", "delegate"]
      services = ["story.submit", "story.query", "story.watch"]
      [keys.ops]
      roles = ["admin"]

  `client` may send requests (to the `call` patterns, default all), `worker` may register
  the `services` patterns, `admin` may read `mmi.storymesh.*` and every story (and is a
  client), `delegate` may name the principal it acts for. Without a roles file every key on
  the allow-list has every role. `mmi.service` stays open to every authenticated peer.
- agents and clients are CURVE clients: their own key pair and the broker's public key
  (`apply_client`).

Nothing here touches the broker's hot path except `KeyRoles.may_call`, which caches.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import os
import re
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.utils import z85

from storymesh.errors import ConfigError
from storymesh.settings import Settings

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = "storymesh"
ROLES = ("client", "worker", "admin", "delegate")
MAX_PRINCIPAL = 128
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_CACHE_MAX = 4096  # service decisions cached per key (service names come from peers)
_REFUSED_LOG_EVERY = 10.0  # seconds between "refused N handshakes" warnings


# --- key files --------------------------------------------------------------------------

def generate_keys(name: str, directory: Path | str, *, force: bool = False) -> tuple[Path, Path]:
    """Write `DIR/NAME.key` (public) and `DIR/NAME.key_secret` (mode 0600); return both."""
    if not _KEY_NAME.fullmatch(name):
        raise ConfigError(f"key name {name!r}: use 1-64 characters of A-Z a-z 0-9 . _ @ + -")
    folder = Path(directory).expanduser()
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    if not force and (public.exists() or secret.exists()):
        raise ConfigError(f"{public} or {secret} already exists; pass --force to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)  # the secret file is never readable by others, not even briefly
    try:
        zmq.auth.create_certificates(str(folder), name)
    finally:
        os.umask(old)
    secret.chmod(0o600)
    public.chmod(0o644)
    return public, secret


def load_keypair(path: Path | str) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys from a `.key_secret` file; ConfigError if it has none."""
    public, secret = _load(path, "secret key file")
    if secret is None:
        raise ConfigError(f"{path} holds no secret key (use the NAME.key_secret file)")
    return public, secret


def load_public(path: Path | str) -> bytes:
    """The z85 public key of a `.key` (or `.key_secret`) file."""
    return _load(path, "public key file")[0]


def _load(path: Path | str, what: str) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(str(Path(path).expanduser()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    if public is None or len(public) != 40:
        raise ConfigError(f"{what} {path} holds no valid public key")
    return public, secret


def is_loopback(endpoint: str) -> bool:
    """Whether binding `endpoint` keeps it on this machine (ipc://, inproc://, loopback tcp)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint.partition("://")[2].rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", "0.0.0.0" is an address too (not loopback), or an interface name


# --- roles ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class KeyRoles:
    """What one key may do; `may_call` / `may_register` take the raw service name."""

    name: str
    roles: frozenset[str]
    services: tuple[str, ...] = ()
    call: tuple[str, ...] = ("*",)
    _cache: dict[tuple[bool, bytes], bool] = field(default_factory=dict, compare=False, repr=False)

    @property
    def admin(self) -> bool:
        return "admin" in self.roles

    @property
    def client(self) -> bool:
        return "client" in self.roles or "admin" in self.roles

    @property
    def worker(self) -> bool:
        return "worker" in self.roles

    @property
    def delegate(self) -> bool:
        return "delegate" in self.roles

    def may_call(self, service: bytes) -> bool:
        if not self.client:
            return False
        return self._matches(False, service) if self.call != ("*",) else True

    def may_register(self, service: bytes) -> bool:
        return self.worker and self._matches(True, service)

    def _matches(self, worker: bool, service: bytes) -> bool:
        key = (worker, service)
        hit = self._cache.get(key)
        if hit is None:
            name = service.decode("ascii", errors="replace")
            patterns = self.services if worker else self.call
            hit = any(fnmatch.fnmatchcase(name, p) for p in patterns)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = hit
        return hit


@dataclass(frozen=True, slots=True)
class Policy:
    """The allow-list (raw 32-byte public key -> key name) and each key's roles."""

    keys: Mapping[bytes, str]
    roles: Mapping[str, KeyRoles]

    def authenticate(self, public: bytes) -> str | None:
        """The key name for a raw public key, or None when it is not on the allow-list."""
        return self.keys.get(public)

    def of(self, name: str | None) -> KeyRoles | None:
        """The roles of an authenticated key name (None: unknown, or revoked since)."""
        return self.roles.get(name) if name is not None else None


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of non-empty strings")
    return tuple(value)


def _entry(name: str, table: Any, where: str) -> KeyRoles:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(table) - {"roles", "services", "call"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    roles = frozenset(_strings(table.get("roles", []), f"{where}.roles"))
    bad = roles - set(ROLES)
    if bad:
        raise ConfigError(f"{where}.roles: unknown role(s) {', '.join(sorted(bad))}; "
                          f"choose from {', '.join(ROLES)}")
    services = _strings(table.get("services", []), f"{where}.services")
    if "worker" in roles and not services:
        raise ConfigError(f"{where}: the worker role needs `services` (patterns it may register)")
    call = _strings(table.get("call", ["*"]), f"{where}.call")
    return KeyRoles(name, roles, services, call)


def read_roles(path: Path | str) -> tuple[KeyRoles, dict[str, KeyRoles]]:
    """The `[default]` entry and the `[keys.NAME]` entries of a roles file."""
    try:
        data = tomllib.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"roles file {path} cannot be read: {exc}") from None
    unknown = set(data) - {"default", "keys"}
    if unknown:
        raise ConfigError(f"roles file {path}: unknown table(s) {', '.join(sorted(unknown))}")
    default = _entry("", data.get("default", {"roles": ["client"]}), f"{path} [default]")
    keys = data.get("keys", {})
    if not isinstance(keys, dict):
        raise ConfigError(f"roles file {path}: [keys] must be a table of tables")
    return default, {name: _entry(name, table, f"{path} [keys.{name}]")
                     for name, table in keys.items()}


def _public_keys(folder: Path) -> dict[bytes, str]:
    keys: dict[bytes, str] = {}
    for path in sorted(folder.glob("*.key")):
        name = path.stem
        if not _KEY_NAME.fullmatch(name):
            log.warning("allow-list: skipping %s (bad key name)", path)
            continue
        try:
            raw = z85.decode(load_public(path))
        except (ConfigError, ValueError) as exc:
            log.warning("allow-list: skipping %s: %s", path, exc)
            continue
        if raw in keys:
            log.warning("allow-list: %s repeats the key of %s; keeping %s", path, keys[raw],
                        keys[raw])
            continue
        keys[raw] = name
    return keys


def load_policy(allow_dir: Path | str, roles_path: Path | str = "") -> Policy:
    """The allow-list from `allow_dir/*.key` and the roles (all roles without a roles file)."""
    if not allow_dir:
        raise ConfigError("allow_dir (--allow-dir) is required when the broker has a curve_secret")
    folder = Path(allow_dir).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"allow_dir {folder} is not a folder")
    keys = _public_keys(folder)
    if roles_path:
        default, named = read_roles(roles_path)
    else:
        default, named = KeyRoles("", frozenset(ROLES), ("*",)), {}
    roles = {name: named[name] if name in named
             else KeyRoles(name, default.roles, default.services, default.call)
             for name in keys.values()}
    log.info("allow-list %s: %d key(s)%s", folder, len(keys),
             "" if roles_path else " (no roles file: every key has every role)")
    return Policy(keys, roles)


# --- ZAP --------------------------------------------------------------------------------

def zap_reply(frames: Sequence[bytes], policy: Policy) -> tuple[list[bytes], str | None]:
    """The ZAP (RFC 27) reply to one request, and the key name it admitted (or None)."""
    request_id = frames[1] if len(frames) > 1 else b""
    if len(frames) < 7 or frames[0] != b"1.0":
        return [b"1.0", request_id, b"500", b"malformed ZAP request", b"", b""], None
    domain, mechanism, credentials = frames[2], frames[5], frames[6]
    if domain != ZAP_DOMAIN.encode() or mechanism != b"CURVE":
        return [b"1.0", request_id, b"400", b"CURVE in the storymesh domain only", b"", b""], None
    name = policy.authenticate(credentials)
    if name is None:
        return [b"1.0", request_id, b"400", b"key not on the allow-list", b"", b""], None
    return [b"1.0", request_id, b"200", b"OK", name.encode(), b""], name


class ZapHandler:
    """The broker's ZAP handler: a REP socket in the broker's context, polled by its loop."""

    def __init__(self, context: zmq.Context[Any], policy: Policy,
                 counters: dict[str, int] | None = None) -> None:
        self.policy = policy
        self.counters = counters if counters is not None else {}
        self.socket: zmq.Socket[Any] = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        try:
            self.socket.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            self.socket.close()
            raise ConfigError(f"cannot start the ZAP handler ({exc}): another one runs in "
                              "this ZeroMQ context") from None
        self._refused = 0
        self._last_warning = 0.0

    def handle(self) -> None:
        """Answer every ZAP request waiting now (never blocks)."""
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            reply, name = zap_reply(frames, self.policy)
            self.socket.send_multipart(reply)
            if name is None:
                self._note_refused(frames)

    def _note_refused(self, frames: Sequence[bytes]) -> None:
        self.counters["unauthenticated"] = self.counters.get("unauthenticated", 0) + 1
        self._refused += 1
        now = time.monotonic()
        if now - self._last_warning >= _REFUSED_LOG_EVERY:  # a flood must not flood the log
            address = frames[3].decode(errors="replace") if len(frames) > 3 else "?"
            log.warning("refused %d CURVE handshake(s) with keys not on the allow-list "
                        "(latest from %s)", self._refused, address)
            self._refused = 0
            self._last_warning = now

    def close(self) -> None:
        if not self.socket.closed:
            self.socket.close()


# --- sockets ----------------------------------------------------------------------------

def apply_server(sock: zmq.Socket[Any], public: bytes, secret: bytes) -> None:
    """Make `sock` a CURVE server that asks ZAP (set before bind)."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())


def client_keys(settings: Settings) -> tuple[bytes, bytes, bytes] | None:
    """(public, secret, broker public) for an agent or client; None when keys are off.

    Keys are on when `broker_key` is set; then `curve_secret` is required. A `curve_secret`
    alone is a broker's own configuration and leaves its clients plain."""
    if not settings.broker_key:
        return None
    if not settings.curve_secret:
        raise ConfigError("broker_key is set but curve_secret is not: a CURVE client needs "
                          "its own key pair (storymesh keys generate NAME --dir DIR)")
    public, secret = load_keypair(settings.curve_secret)
    return public, secret, load_public(settings.broker_key)


def apply_client(sock: zmq.Socket[Any], settings: Settings) -> None:
    """Make `sock` a CURVE client of the broker when keys are configured (before connect).
    On a bad key file the socket is closed and ConfigError raised."""
    try:
        keys = client_keys(settings)
    except ConfigError:
        sock.close(linger=0)
        raise
    if keys is None:
        return
    public, secret, server = keys
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    sock.setsockopt(zmq.CURVE_SERVERKEY, server)
