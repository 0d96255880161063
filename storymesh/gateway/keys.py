"""API keys for the gateway, and the short-lived signed tokens that stand in for them in URLs.

The keys file holds one key per line, `NAME:sha256:HEX` (comments start with `#`): only the
key's name and the SHA-256 of its secret, never the secret. `add_key` makes a 256-bit secret,
appends its line (creating the file with mode 0600) and returns the secret, which is shown
once. A presented secret is hashed and compared with every stored hash in constant time.

An `EventSource`, an `<img>` or a link cannot send a header, so the gateway hands out tokens
`NAME.EXPIRY.SIGNATURE`: an HMAC over the name and the expiry, keyed by the key's stored hash.
They need no state, so they survive a gateway restart and work across replicas sharing one
keys file, and removing a key from the file revokes its tokens at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storymesh.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
SECRET_BYTES = 32  # 256 bits
_LINE_RE = re.compile(r"^(?P<name>[^:\s]+):sha256:(?P<hash>[0-9a-f]{64})$")
_TOKEN_CONTEXT = b"storymesh-gateway-token\x00"
MAX_TOKEN = 200  # characters: a name (64), an expiry and a signature fit well within


def digest(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def add_key(path: Path, name: str) -> str:
    """Add key `name` to the keys file (created with mode 0600); returns the new secret."""
    if not NAME_RE.match(name):
        raise ConfigError(f"key name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    existing = read_keys(path) if path.exists() else {}
    if name in existing:
        raise ConfigError(f"{path} already has a key named {name!r}")
    secret = secrets.token_urlsafe(SECRET_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        if not existing and out.tell() == 0:
            out.write("# storymesh gateway API keys: NAME:sha256:HEX (secrets are never stored)\n")
        out.write(f"{name}:sha256:{digest(secret)}\n")
    return secret


def read_keys(path: Path) -> dict[str, str]:
    """{name: sha256 hex} from a keys file; ConfigError naming the line when it is bad."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from an editor is no key
    except OSError as exc:
        raise ConfigError(f"API keys file {path} cannot be read: {exc}") from None
    keys: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if match is None or not NAME_RE.match(match["name"]):
            raise ConfigError(f"API keys file {path}, line {number}: expected NAME:sha256:HEX")
        keys[match["name"]] = match["hash"]
    return keys


@dataclass(frozen=True, slots=True)
class Token:
    """A verified token: whose it is and until when (wall-clock seconds)."""

    name: str
    expires: int


class KeyRing:
    """The gateway's keys: who a secret or a token belongs to. Rereads the file when it changes."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._seen: tuple[int, int, int] | None = None
        self._keys: dict[str, bytes] = {}
        self.reload()

    def reload(self) -> None:
        """Read the file again if it changed (a key added or removed needs no restart)."""
        try:
            found = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"API keys file {self.path} cannot be read: {exc}") from None
        # The inode and size too: a file replaced or rewritten within one mtime tick counts.
        seen = (found.st_mtime_ns, found.st_size, found.st_ino)
        if seen != self._seen:
            self._keys = {n: bytes.fromhex(h) for n, h in read_keys(self.path).items()}
            self._seen = seen

    def __len__(self) -> int:
        return len(self._keys)

    def owner_of(self, secret: str) -> str | None:
        """The name of the key with this secret, or None; compares with every key, in
        constant time each, so the time taken says nothing about which keys exist."""
        presented = hashlib.sha256(secret.encode()).digest()
        found = None
        for name, stored in self._keys.items():
            if hmac.compare_digest(presented, stored):
                found = name
        return found

    def _sign(self, name: str, expires: int) -> str | None:
        stored = self._keys.get(name)
        if stored is None:
            return None
        message = f"{name}.{expires}".encode()
        return hmac.new(_TOKEN_CONTEXT + stored, message, hashlib.sha256).hexdigest()[:32]

    def issue(self, name: str, ttl: float) -> Token | None:
        """A token for key `name`, valid `ttl` seconds; None when there is no such key."""
        expires = int(self.clock() + ttl)
        return Token(name, expires) if name in self._keys else None

    def encode(self, token: Token) -> str:
        signature = self._sign(token.name, token.expires) or ""
        return f"{token.name}.{token.expires}.{signature}"

    def verify(self, text: str) -> Token | None:
        """The token `text` stands for, or None when it is forged, expired or its key gone.
        Any text may come here from a URL, so nothing in it may raise."""
        if len(text) > MAX_TOKEN or not text.isascii():
            return None
        name, _, rest = text.rpartition(".")
        name, _, expires_text = name.rpartition(".")
        if not name or not expires_text.isdigit() or len(expires_text) > 12:
            return None
        expires = int(expires_text)
        expected = self._sign(name, expires)
        if expected is None or not hmac.compare_digest(expected.encode(), rest.encode()):
            return None
        if expires < self.clock():
            return None
        return Token(name, expires)
