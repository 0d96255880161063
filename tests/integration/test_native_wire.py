"""The broker's two socket paths: the optional compiled helper (storymesh.broker._wire, a
whole message per call) and pyzmq's per-frame calls. Both serve the same messages with the
same rules; the broker imports and serves where the helper is not built; and the setting
`native_wire = false` chooses the pure path. Real broker and agents over tcp loopback.

The rest of the broker's tests run on the default path (the helper when built);
tests/integration/test_broker_dialects.py runs its whole matrix on both.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any, cast

import pytest
import zmq

from storymesh.broker import wire
from storymesh.broker.server import BrokerServer
from storymesh.core import envelope
from storymesh.settings import load
from testkit.mesh import Mesh, fast_settings, new_broker, wait_for

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


# --- stress: the compiled helper's lifetimes, error paths and memory ------------------------

HUGE = bytes(range(256)) * 4096  # 1 MiB


def rss() -> int:
    """This process's resident memory in bytes (Linux: the helper needs /proc anyway)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def native() -> wire.Wire:
    helper = wire.load()
    assert helper is not None, \
        "the compiled helper is not built here: `python setup.py build_ext --inplace`"
    return helper


def router_pair(context: zmq.Context[Any], endpoint: str,
                *names: bytes) -> tuple[zmq.Socket[bytes], list[zmq.Socket[bytes]]]:
    """A ROUTER as the broker sets it (ROUTER_MANDATORY) and DEALERs named `names`, each
    already known to it (each sent one message, read here)."""
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(endpoint)
    last = router.getsockopt(zmq.LAST_ENDPOINT)
    bound = last.decode() if isinstance(last, bytes) else str(last)
    dealers = []
    for name in names:
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.ROUTING_ID, name)
        dealer.connect(bound)
        dealer.send(b"hello")
        assert router.recv_multipart() == [name, b"hello"]
        dealers.append(dealer)
    return router, dealers


def test_frames_past_the_limit_are_freed_as_they_are_read() -> None:
    # Given a helper reading with a limit of 6 frames, and a peer over tcp loopback
    helper = native()
    context: zmq.Context[Any] = zmq.Context()
    router, (dealer,) = router_pair(context, "tcp://127.0.0.1:*", b"peer")
    big = bytes(range(256)) * 512  # 128 KiB: past wire.BIG_FRAME
    head = [b"MDPC02", b"\x01", b"echo", big, b"", big]
    try:
        def one() -> tuple[bytes, list[Any]]:
            dealer.send_multipart(head + [big] * 16)  # 2 MiB past the limit each time
            return wait_for(lambda: helper.recv(router.underlying, 6, wire.BIG_FRAME), WAIT,
                            "the message read")
        for _ in range(20):  # warm-up: libzmq's buffers and the allocator settle
            one()
        before = rss()
        # When 300 such messages are read (600 MiB dropped)
        for _ in range(300):
            ident, frames = one()
            # Then each comes as its first six frames, the big ones past the first three
            # zero-copy, the same bytes
            assert ident == b"peer"
            assert [type(f).__name__ for f in frames] == ["bytes"] * 3 + ["Msg", "bytes", "Msg"]
            assert frames[3].bytes == big
            assert bytes(frames[5]) == big
            assert frames[4] == b""
        # and what was dropped is not held: a leak of one dropped frame each is 37 MiB
        assert rss() - before < 24 * 2**20
    finally:
        context.destroy(linger=0)  # closes its sockets first


def test_received_frames_outlive_their_socket_and_context() -> None:
    # Given 1 MiB frames received zero-copy over tcp, then their sockets and context gone
    helper = native()
    context: zmq.Context[Any] = zmq.Context()
    router, (dealer,) = router_pair(context, "tcp://127.0.0.1:*", b"old")
    dealer.send_multipart([b"a", b"b", b"c", HUGE, HUGE[::-1]])
    _, frames = wait_for(lambda: helper.recv(router.underlying, 8, wire.BIG_FRAME), WAIT,
                         "the message read")
    view = memoryview(frames[3])
    context.destroy(linger=0)  # closes its sockets first
    # When they are read and sent on by a ROUTER of a new context
    assert bytes(view) == HUGE
    assert frames[4].bytes == HUGE[::-1]
    fresh: zmq.Context[Any] = zmq.Context()
    router, (dealer,) = router_pair(fresh, "inproc://fresh", b"new")
    try:
        assert helper.send(router.underlying, b"new", frames[3:]) == 0
        del frames, view  # libzmq's copies keep the data alive on their own
        # Then the bytes arrive whole
        assert dealer.recv_multipart() == [HUGE, HUGE[::-1]]
    finally:
        fresh.destroy(linger=0)  # closes its sockets first


def test_sends_to_vanished_peers_and_bad_frames_hold_no_memory() -> None:
    # Given a helper on a ROUTER with one live peer, and frames of every kind it sends
    helper = native()
    context: zmq.Context[Any] = zmq.Context()
    router, (dealer,) = router_pair(context, "inproc://leaks", b"live")
    handle = router.underlying
    blob = bytes(range(256)) * 512
    try:
        def turn() -> None:
            dealer.send_multipart([b"a", b"b", b"c", blob, b"small"])
            message = helper.recv(handle, 8, wire.BIG_FRAME)  # inproc: there at once
            assert message is not None
            frames = message[1]
            # a vanished peer: its errno, nothing sent
            assert helper.send(handle, b"gone", frames) == zmq.EHOSTUNREACH
            # a frame that is no buffer: raises, nothing sent
            with pytest.raises(TypeError):
                helper.send(handle, b"live", [b"x", frames[3], "no buffer"])
            # bytes, a zero-copy frame, a bytearray and a memoryview: all sent
            assert helper.send(handle, b"live", [frames[0], frames[3], bytearray(b"ba"),
                                                 memoryview(blob)[:3]]) == 0
            assert dealer.recv_multipart() == [b"a", blob, b"ba", blob[:3]]
        tracemalloc.start()
        try:
            for _ in range(500):  # warm-up, traced: what the first turns allocate stays
                turn()
            gc.collect()  # pytest.raises leaves cycles behind until the collector runs
            before = tracemalloc.get_traced_memory()[0]
            before_rss = rss()
            # When 10,000 turns run
            for _ in range(10_000):
                turn()
            # Then no Python object is left behind (one leaked each turn is 300 KiB or more)
            gc.collect()
            assert tracemalloc.get_traced_memory()[0] - before < 64 * 1024
        finally:
            tracemalloc.stop()
        # and no libzmq message either (one leaked 128 KiB frame each turn is 1.2 GiB)
        assert rss() - before_rss < 32 * 2**20
    finally:
        context.destroy(linger=0)  # closes its sockets first


def test_ten_thousand_requests_through_the_helper_hold_no_memory() -> None:
    # Given a broker on the compiled helper, an echo agent and a client
    with Mesh(native_wire=True) as mesh:
        assert mesh.broker.wire is not None
        mesh.add_echo()
        with mesh.client() as client:
            def call(i: int) -> None:  # one in 20 carries 256 KiB each way (zero-copy frames)
                payload: dict[str, Any] = {"n": i, "blob": BIG} if i % 20 == 0 else {"n": i}
                assert client.call("echo", payload).payload["n"] == i
            for i in range(1000):  # warm-up: buffers, caches and the allocator settle
                call(i)
            before = rss()
            # When 10,000 request/replies go through it
            for i in range(10_000):
                call(i)
            # Then memory stays flat (a zero-copy frame leaked each big one: 250 MiB)
            assert rss() - before < 48 * 2**20
        assert mesh.broker.core.counters["internal_errors"] == 0


@pytest.mark.parametrize("native_wire", [True, False], ids=["native", "pure"])
def test_a_frame_that_is_no_buffer_never_sends_the_next_message_to_its_peer(
        native_wire: bool) -> None:
    # Given a broker (its loop not running: this thread owns its socket) and peers A and B
    context: zmq.Context[Any] = zmq.Context()
    server = new_broker(fast_settings(bind=f"inproc://glue-{native_wire}",
                                      native_wire=native_wire), context)
    assert (server.wire is not None) == native_wire
    peers = []
    try:
        for name in (b"A", b"B"):
            peer = context.socket(zmq.DEALER)
            peer.setsockopt(zmq.LINGER, 0)
            peer.setsockopt(zmq.ROUTING_ID, name)
            peer.setsockopt(zmq.RCVTIMEO, int(WAIT * 1000))  # a lost message fails, not hangs
            peer.connect(server.endpoint)
            peers.append(peer)
            def known(name: bytes = name) -> bool:
                return server._send_message(name, [b"hi"]) == 0
            wait_for(known, WAIT, f"{name!r} known to the ROUTER")
            assert peer.recv_multipart() == [b"hi"]
        a, b = peers
        # When a message for A has a frame that is no buffer (a bug), then B is sent one
        with pytest.raises(TypeError):
            server._send_all([(b"A", [b"one", cast(Any, "no buffer"), b"three"])], 0.0)
        server._send_all([(b"B", [b"for B"]), (b"A", [b"marker"])], 0.0)
        # Then B gets its message, and A never does (at most its own, cut short)
        assert b.recv_multipart() == [b"for B"]
        got_a = []
        while (message := a.recv_multipart()) != [b"marker"]:
            got_a.append(message)
        assert got_a in ([], [[b"one", b""]])
    finally:
        for peer in peers:
            peer.close()
        server.close()
        context.term()


@pytest.mark.parametrize("native_wire", [True, False], ids=["native", "pure"])
def test_a_closed_broker_socket_is_enotsock_on_both_paths(native_wire: bool) -> None:
    # Given a broker whose socket is closed
    context: zmq.Context[Any] = zmq.Context()
    server = new_broker(fast_settings(bind=f"inproc://closed-{native_wire}",
                                      native_wire=native_wire), context)
    assert (server.wire is not None) == native_wire
    server.close()
    try:
        # When it sends or reads, Then pyzmq's error for a closed socket comes (never a call
        # into libzmq with the freed socket)
        with pytest.raises(zmq.ZMQError) as sent:
            server._send_all([(b"A", [b"x"])], 0.0)
        with pytest.raises(zmq.ZMQError) as read:
            server._drain(0.0, 0.0)
        assert sent.value.errno == read.value.errno == zmq.ENOTSOCK
    finally:
        context.term()


def test_the_helper_stays_bound_to_the_libzmq_it_found() -> None:
    # Given the helper bound to pyzmq's libzmq, and libc, another library already loaded
    helper = native()
    from storymesh.broker import _wire  # type: ignore[attr-defined]

    (path,) = wire.libzmq_paths()
    libc = next(line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                if "/libc.so" in line or "/libc-" in line)
    # When it is bound again to the same library, and then to libc
    _wire.bind(path, wire.zmq_error, zmq.zmq_version_info())
    with pytest.raises(ImportError, match="bound to another libzmq"):
        _wire.bind(libc, wire.zmq_error, zmq.zmq_version_info())
    # Then it refuses libc and keeps its functions: a round trip still works
    context: zmq.Context[Any] = zmq.Context()
    router, (dealer,) = router_pair(context, "inproc://rebind", b"peer")
    try:
        dealer.send_multipart([b"ping", HUGE])
        ident, frames = wait_for(lambda: helper.recv(router.underlying, 4, wire.BIG_FRAME),
                                 WAIT, "the message read")
        assert helper.send(router.underlying, ident, frames) == 0
        assert dealer.recv_multipart() == [b"ping", HUGE]
    finally:
        context.destroy(linger=0)  # closes its sockets first
