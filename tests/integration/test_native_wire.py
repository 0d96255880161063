"""The broker's two socket paths: the optional compiled helper (storymesh.broker._wire, a
whole message per call) and pyzmq's per-frame calls. Both serve the same messages with the
same rules; the broker imports and serves where the helper is not built; and the setting
`native_wire = false` chooses the pure path. Real broker and agents over tcp loopback.

The rest of the broker's tests run on the default path (the helper when built);
tests/integration/test_broker_dialects.py runs its whole matrix on both.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import zmq

from storymesh.broker import wire
from storymesh.broker.server import BrokerServer
from storymesh.core import envelope
from storymesh.settings import load
from testkit.mesh import Mesh, wait_for

WAIT = 5.0
BIG = bytes(range(256)) * 1024  # 256 KiB: over wire.BIG_FRAME, so it stays zero-copy


@pytest.fixture(params=["native", "pure"])
def mesh(request: pytest.FixtureRequest) -> Any:
    """A real broker on the path named by the parameter, with two echo agents."""
    with Mesh(native_wire=request.param == "native") as m:
        assert (m.broker.wire is not None) == (request.param == "native"), \
            "the compiled helper is not built here: `python setup.py build_ext --inplace`"
        m.add_echo(count=2)
        yield m


def test_small_and_large_requests_and_partials_are_relayed_alike(mesh: Mesh) -> None:
    # Given a broker on one of its two paths and echo agents
    with mesh.client() as client:
        # When a small request, a large one and one with PARTIALs go through
        small = client.call("echo", {"text": "x" * 100})
        large = client.call("echo", {"blob": BIG, "text": "big"})
        replies = list(client.stream("echo", {"partials": 3}))
    # Then each comes back whole, the large body byte for byte
    assert small.payload["text"] == "x" * 100
    assert large.payload["blob"] == BIG
    assert [r.final for r in replies] == [False, False, False, True]
    assert mesh.broker.core.counters["internal_errors"] == 0


def test_frames_past_max_frames_are_dropped_and_the_broker_goes_on(mesh: Mesh) -> None:
    # Given a raw peer on a broker whose limit is the default max_frames
    limit = mesh.broker.settings.max_frames
    sock = mesh.context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(mesh.endpoint)
    try:
        # When it sends one message of limit + 500 frames
        sock.send_multipart([b"MDPC02", b"\x01", b"echo"] + [b"f"] * (limit + 500))
        # Then the broker rejects it as malformed, and keeps serving others
        wait_for(lambda: mesh.broker.core.counters["malformed"] >= 1, WAIT, "malformed counted")
        with mesh.client() as client:
            assert client.call("echo", {"n": 1}).payload["n"] == 1
    finally:
        sock.close()


def test_a_reply_to_a_vanished_client_is_counted_unreachable_on_both_paths(
        mesh: Mesh) -> None:
    # Given a raw 0.2 client that asks echo to sleep, then goes away before the reply
    body = [bytes(f) for f in envelope.pack(envelope.make_header("gone-1"), {"sleep": 0.3})]
    sock = mesh.context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(mesh.endpoint)
    sock.send_multipart([b"MDPC02", b"\x01", b"echo", *body])
    wait_for(lambda: mesh.broker.core.counters["requests"] >= 1, WAIT, "the request taken")
    sock.close()
    # When the FINAL comes back for a peer the ROUTER no longer knows (EHOSTUNREACH)
    # Then the broker notes it and goes on serving
    wait_for(lambda: mesh.broker.core.counters["unreachable"] >= 1, WAIT, "unreachable counted")
    with mesh.client() as client:
        assert client.call("echo", {"n": 2}).payload["n"] == 2
    assert mesh.broker.core.counters["internal_errors"] == 0


def test_the_setting_turns_the_helper_off() -> None:
    # Given native_wire off by its environment variable
    settings = load("/dev/null", env={"STORYMESH_NATIVE_WIRE": "false",
                                      "STORYMESH_BIND": "inproc://switch"})
    # When a broker is built with it, Then it uses the pure path
    assert settings.native_wire is False
    server = BrokerServer(settings.broker_section())
    try:
        assert server.wire is None
    finally:
        server.close()


def test_the_broker_imports_and_serves_without_the_extension() -> None:
    # Given a process where the compiled module cannot be imported (as without a compiler)
    script = textwrap.dedent("""
        import sys
        sys.modules["storymesh.broker._wire"] = None  # import fails: not built
        from storymesh.broker import wire
        assert wire.load() is None
        from testkit.mesh import Mesh
        with Mesh() as mesh:
            assert mesh.broker.wire is None
            mesh.add_echo()
            with mesh.client() as client:
                assert client.call("echo", {"k": "v"}).payload["k"] == "v"
        print("served")
    """)
    # When it starts a broker and an echo agent and makes a request
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                          text=True, timeout=60, check=False)
    # Then the pure path serves it
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "served"


def test_libzmq_is_found_in_the_process_maps(tmp_path: Path) -> None:
    # Given a maps file naming one libzmq (twice, as each mapping of a file is a line)
    maps = tmp_path / "maps"
    lib = "/site/pyzmq.libs/libzmq-2f02442c.so.5.2.5"
    maps.write_text(
        f"7f00-7f01 r--p 00000000 08:01 42 {lib}\n"
        f"7f01-7f02 r-xp 00001000 08:01 42 {lib}\n"
        "7f02-7f03 rw-p 00000000 00:00 0 \n"
        "7f03-7f04 r-xp 00000000 08:01 43 /usr/lib/libc.so.6\n", encoding="utf-8")
    # Then that one file is found, and a missing maps file finds none
    assert wire.libzmq_paths(str(maps)) == {lib}
    assert wire.libzmq_paths(str(tmp_path / "absent")) == set()
