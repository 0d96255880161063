"""CURVE key pairs, an allow-list and a roles file for tests of a keyed mesh.

One roles file serves every keyed test (in-process and spawned daemons): each key name below
has the roles a real deployment would give it. A roles entry for a key that is not on the
allow-list grants nothing, so a test that lists fewer keys can use the same file.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from storymesh.transport import curve

# Key names on the allow-list by default, and two that never are.
NAMES = ("broker", "alice", "bob", "gpu", "story", "agents", "ops")
OUTSIDERS = ("mallory", "imposter")
ROLES = """
[keys.gpu]
roles = ["worker"]
services = ["echo"]
[keys.alice]
roles = ["client"]
[keys.bob]
roles = ["client"]
[keys.story]
roles = ["worker", "client", "delegate"]
services = ["story.submit", "story.query", "story.watch"]
[keys.agents]
roles = ["worker"]
services = ["story.author", "story.illustrator", "story.publisher"]
[keys.ops]
roles = ["admin"]
"""


@dataclass(frozen=True)
class Keys:
    """Key pairs in `dir`, the broker's allow-list folder `allow` and the `roles` file."""

    dir: Path
    allow: Path
    roles: Path

    def secret(self, name: str) -> str:
        return str(self.dir / f"{name}.key_secret")

    def public(self, name: str) -> str:
        return str(self.dir / f"{name}.key")

    def allow_key(self, name: str) -> None:
        shutil.copy(self.public(name), self.allow / f"{name}.key")


def make_keys(root: Path, names: tuple[str, ...] = NAMES,
              outsiders: tuple[str, ...] = OUTSIDERS) -> Keys:
    """Key pairs for `names` (allowed) and `outsiders` (not allowed) under `root`, and the
    roles file. A pair already in `root/keys` (made with `storymesh keys generate`) is kept."""
    keys = Keys(root / "keys", root / "allow", root / "roles.toml")
    keys.allow.mkdir(parents=True)
    for name in (*names, *outsiders):
        if not Path(keys.secret(name)).exists():
            curve.generate_keys(name, keys.dir)
    for name in names:
        keys.allow_key(name)
    keys.roles.write_text(ROLES)
    return keys


def throw(sock: zmq.Socket[Any], frames: list[bytes]) -> None:
    """Send what an attacker sends, never waiting: a peer whose handshake the broker refused
    (or whose connection libzmq dropped) may have no pipe to queue into."""
    with contextlib.suppress(zmq.Again):
        sock.send_multipart(frames, zmq.NOBLOCK)
