"""The broker survives what a peer or a bug throws at it: too many frames, an unexpected
exception while handling one message."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import zmq

from storymesh.broker.server import read_message
from storymesh.core.broker import Send
from storymesh.errors import RequestFailed
from testkit.mesh import Mesh, wait_for


def test_frames_past_max_frames_are_dropped_as_they_are_read(
        context: zmq.Context[Any]) -> None:
    # Given a ROUTER and a peer that sends a 10,000-frame message, then a normal one
    router = context.socket(zmq.ROUTER)
    router.bind("inproc://frames")
    peer = context.socket(zmq.DEALER)
    peer.connect("inproc://frames")
    peer.send_multipart([b"x"] * 10_000)
    peer.send_multipart([b"MDPC02", b"next"])
    try:
        wait_for(lambda: router.poll(0), what="the messages")
        # When the broker's reader takes them with max_frames 80
        _, first = read_message(router, 80)
        _, second = read_message(router, 80)
    finally:
        peer.close(0)
        router.close(0)
    # Then it kept 81 frames of the first (enough to reject it), and the next message is
    # read whole and in step
    assert len(first) == 81
    assert [f.bytes for f in second] == [b"MDPC02", b"next"]


def test_an_unexpected_error_costs_one_message_and_the_broker_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    # Given a broker with an echo worker
    with Mesh() as mesh:
        mesh.add_echo()
        mesh.wait_workers("echo", 1)
        core = mesh.broker.core
        real = core.fast_request
        failures: list[bytes] = []

        def buggy(client: bytes, name: bytes, body: Any, now: float) -> list[Send] | None:
            if not failures:  # the first request hits a bug, after a state change of its own
                failures.append(name)
                core.counters["requests"] += 1
                raise AssertionError("a bug in the broker")
            return real(client, name, body, now)

        core.fast_request = buggy  # type: ignore[method-assign]
        client = mesh.client()
        try:
            # When a request hits a bug in the broker
            with (caplog.at_level(logging.ERROR, logger="storymesh.broker.server"),
                  pytest.raises(RequestFailed) as failed):
                client.call("echo", {"text": "first"})
            # Then its client gets `internal`, the error is logged once with its traceback
            assert failed.value.code == "internal"
            logged = [r for r in caplog.records if "internal error" in r.getMessage()]
            assert len(logged) == 1
            assert "AssertionError: a bug in the broker" in \
                logged[0].getMessage()
            # And the broker goes on serving, with the error counted
            assert client.call("echo", {"text": "second"}).payload["text"] == "second"
            counters = mesh.snapshot()["counters"]
            assert counters["internal_errors"] == 1
            assert counters["internal"] == 1
        finally:
            client.close()
