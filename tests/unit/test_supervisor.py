"""`storymesh up`'s pure parts: endpoints, the plan of children, the restart rule, and the
supervisor's decisions on a fake clock with fake processes (no process is started)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from storymesh.errors import ConfigError
from storymesh.ops.supervisor import (
    ChildSpec,
    CrashHistory,
    GiveUp,
    RestartPolicy,
    Supervisor,
    connect_endpoint,
    plan,
)
from testkit.mesh import fast_settings


@pytest.mark.parametrize(("bind", "connect"), [
    ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5555"),
    ("tcp://*:5555", "tcp://127.0.0.1:5555"),
    ("tcp://0.0.0.0:6000", "tcp://127.0.0.1:6000"),
    ("tcp://[::]:6000", "tcp://[::1]:6000"),
    ("tcp://10.0.0.5:7000", "tcp://10.0.0.5:7000"),
    ("ipc:///tmp/storymesh.sock", "ipc:///tmp/storymesh.sock"),
])
def test_children_connect_where_the_broker_binds(bind: str, connect: str) -> None:
    assert connect_endpoint(bind) == connect


@pytest.mark.parametrize("bind", ["inproc://mesh", "tcp://127.0.0.1:0", "tcp://127.0.0.1:*",
                                  "tcp://127.0.0.1"])
def test_endpoints_other_processes_cannot_reach_are_refused(bind: str) -> None:
    with pytest.raises(ConfigError, match="storymesh up needs"):
        connect_endpoint(bind)


def test_the_plan_has_a_broker_that_binds_and_agents_that_connect() -> None:
    # Given settings with a wildcard bind and a config file
    settings = fast_settings(bind="tcp://*:5999", log_level="warning")
    # When up plans two illustrators
    specs = plan(settings, illustrators=2, config="/etc/sm.toml",  # type: ignore[arg-type]
                 python="py")
    # Then there is one broker binding, and every agent connects to loopback
    names = [s.name for s in specs]
    assert names == ["broker", "author", "illustrator-1", "illustrator-2", "publisher", "story"]
    broker = specs[0]
    assert broker.argv[:4] == ("py", "-m", "storymesh", "broker")
    assert broker.argv[broker.argv.index("--bind") + 1] == "tcp://*:5999"
    for spec in specs[1:]:
        assert spec.argv[3:5] == ("agent", spec.name.split("-")[0])
        assert spec.argv[spec.argv.index("--broker") + 1] == "tcp://127.0.0.1:5999"
    # And the config file and the log level go to every child
    for spec in specs:
        assert spec.argv[spec.argv.index("--config") + 1] == "/etc/sm.toml"
        assert spec.argv[spec.argv.index("--log-level") + 1] == "warning"


def test_up_with_http_adds_a_gateway_that_connects_like_the_agents() -> None:
    # Given settings whose gateway listens on a chosen address
    settings = fast_settings(bind="tcp://*:5999", **{"gateway.http": "127.0.0.1:8181"})
    # When up plans its children with --http
    specs = plan(settings, python="py", http=True)
    # Then the last child is the gateway, on that address, connecting where the agents do
    gateway = specs[-1]
    assert gateway.name == "gateway"
    assert gateway.argv[3] == "gateway"
    assert gateway.argv[gateway.argv.index("--http") + 1] == "127.0.0.1:8181"
    assert gateway.argv[gateway.argv.index("--broker") + 1] == "tcp://127.0.0.1:5999"
    # And without --http there is none
    assert "gateway" not in [s.name for s in plan(settings, python="py")]


def test_backoff_doubles_and_a_crash_loop_gives_up() -> None:
    # Given the default rule: 5 exits within 30 s is a crash loop
    history = CrashHistory(RestartPolicy(initial=0.5, cap=10.0, window=30.0, limit=5))
    # When a child exits four times in quick succession, backoff doubles
    assert [history.crashed(t) for t in (0.0, 1.0, 2.0, 4.0)] == [0.5, 1.0, 2.0, 4.0]
    # And the fifth exit within the window means give up
    assert history.crashed(8.0) is None


def test_exits_spread_over_time_never_give_up_and_backoff_is_capped() -> None:
    history = CrashHistory(RestartPolicy(initial=1.0, cap=3.0, window=10.0, limit=3))
    # A child that dies every 6 s has at most two exits in any 10 s window
    delays = [history.crashed(6.0 * i) for i in range(10)]
    assert all(d is not None and d <= 3.0 for d in delays), delays


class FakeProc:
    """A stand-in for subprocess.Popen: exits when the test says so."""

    pids: ClassVar[Iterator[int]] = iter(range(1000, 2000))
    signalled: ClassVar[list[str]] = []  # argv[0] of each process signalled, in order

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        self.argv = argv
        self.pid = next(self.pids)
        self.returncode: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.signalled.append(self.argv[0])
        self.returncode = -sig

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None
        return self.returncode


def supervisor(**kwargs: Any) -> tuple[Supervisor, list[FakeProc]]:
    started: list[FakeProc] = []

    def popen(argv: list[str], **kw: Any) -> FakeProc:
        proc = FakeProc(argv, **kw)
        started.append(proc)
        return proc
    specs = [ChildSpec("broker", ("b",), "tcp://x:1"), ChildSpec("author", ("a",), "tcp://x:1")]
    sup = Supervisor(specs, threading.Event(), popen=popen, **kwargs)  # type: ignore[arg-type]
    sup.start()
    return sup, started


def test_a_crashed_child_is_restarted_after_its_backoff() -> None:
    sup, started = supervisor(policy=RestartPolicy(initial=0.5))
    author = sup.children[1]
    # When the author dies
    started[1].returncode = -signal.SIGKILL
    sup.turn(10.0)
    # Then it is not restarted before the backoff passes, and is after
    assert author.restart_at == 10.5
    assert len(started) == 2
    sup.turn(10.4)
    assert len(started) == 2
    sup.turn(10.5)
    assert len(started) == 3
    assert author.pid == started[2].pid
    assert author.starts == 2


def test_a_child_that_keeps_crashing_stops_up() -> None:
    sup, started = supervisor(policy=RestartPolicy(initial=0.1, limit=3, window=30.0))

    def crash_author_each_second() -> None:
        now = 0.0
        for _ in range(10):
            sup.children[1].proc.returncode = 1  # type: ignore[union-attr]
            sup.turn(now)
            now += 1.0
            sup.turn(now)

    with pytest.raises(GiveUp, match="author keeps crashing") as gave_up:
        crash_author_each_second()
    assert gave_up.value.code == 1
    assert len(started) == 2 + 2  # two restarts, then the third exit gives up


def test_a_child_with_a_configuration_error_is_not_restarted() -> None:
    sup, started = supervisor()
    started[1].returncode = 2
    with pytest.raises(GiveUp, match="configuration error") as gave_up:
        sup.turn(0.0)
    assert gave_up.value.code == 2
    assert len(started) == 2


def test_stopping_terminates_agents_before_the_broker() -> None:
    sup, started = supervisor()
    FakeProc.signalled.clear()
    sup.stop_all()
    assert FakeProc.signalled == ["a", "b"]  # the author's argv, then the broker's
    assert all(p.signals == [signal.SIGTERM] for p in started)
