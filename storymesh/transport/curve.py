"""CurveZMQ on sockets: key files, the broker's ZAP handler, CURVE socket options.

Keys are pyzmq `zmq.auth` certificate files: `NAME.key` (public) and `NAME.key_secret`
(public + secret). With keys configured:

- the broker is a CURVE server; a ZAP handler (`ZapHandler`, polled by the broker's own
  loop, so it needs no thread) accepts a peer only if its public key is one of the `*.key`
  files in the allow-list folder, and names the peer after that file's stem: the broker's
  ROUTER then sees it as the frame property `User-Id`. The decisions themselves (who is
  allowed, which roles a key has) are the pure `storymesh.core.policy`;
- agents and clients are CURVE clients: their own key pair and the broker's public key
  (`peer_socket`, `apply_client`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.utils import z85

from storymesh.core.policy import KEY_NAME, ZAP_DOMAIN, Policy, build_policy, zap_reply
from storymesh.errors import ConfigError
from storymesh.settings import PeerSettings

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_REFUSED_LOG_EVERY = 10.0  # seconds between "refused N handshakes" warnings


# --- key files --------------------------------------------------------------------------

def generate_keys(name: str, directory: Path | str, *, force: bool = False) -> tuple[Path, Path]:
    """Write `DIR/NAME.key` (public) and `DIR/NAME.key_secret` (mode 0600); return both."""
    if not KEY_NAME.fullmatch(name):
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


def _public_keys(folder: Path) -> dict[bytes, str]:
    keys: dict[bytes, str] = {}
    for path in sorted(folder.glob("*.key")):
        name = path.stem
        if not KEY_NAME.fullmatch(name):
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
    policy = build_policy(_public_keys(folder), roles_path)
    log.info("allow-list %s: %d key(s)%s", folder, len(policy.keys),
             "" if roles_path else " (no roles file: every key has every role)")
    return policy


# --- ZAP ----------------------------------------------------------------------------------

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


def client_keys(settings: PeerSettings) -> tuple[bytes, bytes, bytes] | None:
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


def peer_socket(context: zmq.Context[Any], settings: PeerSettings) -> zmq.Socket[Any]:
    """A DEALER for a client or worker, not yet connected: the peer's high-water marks and
    largest message, no linger, and CURVE when keys are configured (`apply_client`)."""
    sock: zmq.Socket[Any] = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, settings.hwm)
    sock.setsockopt(zmq.RCVHWM, settings.hwm)
    sock.setsockopt(zmq.MAXMSGSIZE, settings.max_message_bytes)
    apply_client(sock, settings)
    return sock


def apply_client(sock: zmq.Socket[Any], settings: PeerSettings) -> None:
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
