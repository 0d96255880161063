"""The broker's security policy, pure: key names, roles and the ZAP decision (no zmq).

A `Policy` maps each allowed raw CURVE public key to its key name, and each key name to its
roles (`KeyRoles`), from an optional roles file:

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

`client` may send requests (to the `call` patterns, default all), `worker` may register the
`services` patterns, `admin` may read `mmi.storymesh.*` and every story (and is a client),
`delegate` may name the principal it acts for. Without a roles file every key on the
allow-list has every role. `mmi.service` stays open to every authenticated peer.

`zap_reply` answers one ZAP (RFC 27) request from the policy; the socket side (key files,
the ZAP handler's socket, CURVE socket options) is `storymesh.transport.curve`. Nothing here
touches the broker's hot path except `KeyRoles.may_call`, which caches.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storymesh.errors import ConfigError

ZAP_DOMAIN = "storymesh"
ROLES = ("client", "worker", "admin", "delegate")
MAX_PRINCIPAL = 128
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_CACHE_MAX = 4096  # service decisions cached per key (service names come from peers)


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


def build_policy(keys: Mapping[bytes, str], roles_path: Path | str = "") -> Policy:
    """The policy for an allow-list (raw public key -> key name) and an optional roles file
    (without one, every key has every role)."""
    if roles_path:
        default, named = read_roles(roles_path)
    else:
        default, named = KeyRoles("", frozenset(ROLES), ("*",)), {}
    roles = {name: named[name] if name in named
             else KeyRoles(name, default.roles, default.services, default.call)
             for name in keys.values()}
    return Policy(dict(keys), roles)


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
