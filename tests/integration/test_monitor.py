"""`storymesh monitor`: the pure view over hand-made snapshots, then the real thing: a broker,
echo agents (in threads and one spawned process), a story service, a worker killed with
SIGKILL and the broker restarted on the same port, each seen through rich's recording
console exactly as the terminal would show it.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from storymesh import settings as settings_mod
from storymesh.ops.monitor import Observation, Poller, current_step, rates, render, run_monitor
from storymesh.settings import Settings
from testkit.mesh import Mesh, Spawner, fast_settings, wait_for


def text_of(renderable: Any, width: int = 220) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("│").split("│")]


def snapshot(**over: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {
        "version": 1, "uptime": 12.5, "pid": 4242,
        "counters": {"requests": 40, "replies": 30, "partials": 5, "worker_lost": 1},
        "services": {
            "story.illustrator": {"queue": 3, "workers": 2, "idle": 0, "busy": 2, "served": 7,
                                  "failed": 1, "mean_service_time": 2.25},
            "story.publisher": {"queue": 0, "workers": 0, "idle": 0, "busy": 0, "served": 0,
                                "failed": 0, "mean_service_time": None},
        },
        "workers": [
            {"id": "00aabbcc01", "service": "story.illustrator", "state": "busy",
             "dialect": "MDPW02", "heartbeat_age": 0.4, "served": 4, "uptime": 60.0,
             "meta": {"backend": "diffusers", "model": "/models/sd-tiny", "device": "cuda:1",
                      "dtype": "float16", "host": "gpu-box-1", "pid": 777},
             "request": {"id": "req-123", "corr": "st-abc", "attempt": 1, "age": 1.5}},
            {"id": "00aabbcc02", "service": "story.illustrator", "state": "idle",
             "dialect": "MDPW02", "heartbeat_age": 0.1, "served": 3, "uptime": 61.0,
             "meta": {}, "request": None},
        ],
    }
    snap.update(over)
    return snap


# --- the pure view --------------------------------------------------------------------------

def test_view_shows_broker_services_workers_and_stories() -> None:
    # Given one poll of a busy mesh with a story service
    obs = Observation("tcp://10.0.0.1:5555", time.time(), snapshot=snapshot(),
                      messages_per_s=12.34,
                      stories=[{"corr": "st-abc", "status": "running", "title": "The Fox",
                                "step": "chapter 2/3, pictures 1/4", "updated": time.time()}])
    # When it is rendered
    text = text_of(render(obs))
    # Then the broker line has its uptime, counters and message rate
    assert "UP" in text
    assert "tcp://10.0.0.1:5555" in text
    assert "pid 4242" in text
    assert "requests 40" in text
    assert "messages/s 12.3" in text
    assert "errors 1" in text
    # And each service its figures, in table order
    rows = {row[0]: row for row in map(cells, text.splitlines()) if len(row) == 8}
    assert rows["story.illustrator"] == ["story.illustrator", "2", "0", "2", "3", "7", "1",
                                         "2.250s"]
    assert rows["story.publisher"] == ["story.publisher", "0", "0", "0", "0", "0", "0", "-"]
    # And each worker what it announced and what it is doing
    busy = next(line for line in text.splitlines() if "00aabbcc01" in line)
    for shown in ("busy", "0.4s", "req-123", "st-abc", "gpu-box-1:777", "diffusers",
                  "/models/sd-tiny", "cuda:1"):
        assert shown in busy, shown
    idle = next(line for line in text.splitlines() if "00aabbcc02" in line)
    assert "idle" in idle
    assert "req-123" not in idle
    # And the story in progress its current step
    story = next(line for line in text.splitlines() if "st-abc" in line and "The Fox" in line)
    assert "running" in story
    assert "chapter 2/3, pictures 1/4" in story


def test_many_idle_connections_of_one_process_share_a_row() -> None:
    # Given a story service's 16 idle watch connections, one of them busy, and 2 other idle
    meta = {"backend": "story", "host": "hub", "pid": 99}
    watch = [{"id": f"00ee{i:06x}", "service": "story.watch", "state": "idle",
              "heartbeat_age": 0.1 * i, "served": 1, "meta": meta, "request": None}
             for i in range(16)]
    watch[3] = {**watch[3], "state": "busy",
                "request": {"id": "w-1", "corr": "st-xyz", "attempt": 1, "age": 2.0}}
    obs = Observation("tcp://hub:5555", time.time(), snapshot=snapshot(
        workers=[*watch, *snapshot()["workers"]]))
    # When it is rendered
    lines = text_of(render(obs)).splitlines()
    # Then the 15 idle ones are one row, with their count, oldest heartbeat and served total
    group = next(line for line in lines if "15 connections" in line)
    assert "story.watch" in group
    assert "idle" in group
    assert "1.5s" in group
    assert " 15 " in group
    assert not any(f"00ee{i:06x}" in line for line in lines for i in range(16) if i != 3)
    # And the busy one keeps its own row, and a process with few idle ones is not grouped
    assert any("00ee000003" in line and "st-xyz" in line for line in lines)
    assert any("00aabbcc02" in line for line in lines)


def test_view_of_a_broker_that_is_down() -> None:
    now = time.time()
    obs = Observation("tcp://10.0.0.1:5555", now, error="no reply", down_since=now - 3.0)
    text = text_of(render(obs))
    assert "DOWN" in text
    assert "for 3.0s" in text
    assert "no reply" in text
    assert "services" not in text
    assert "workers" not in text


def test_stories_panel_only_with_a_story_service() -> None:
    obs = Observation("tcp://x:1", time.time(), snapshot=snapshot(), stories=None)
    assert "stories in progress" not in text_of(render(obs))


@pytest.mark.parametrize(("steps", "expected"), [
    (None, "accepted"),
    ({"outline": False, "chapters": 3}, "outline"),
    ({"outline": True, "chapters": 3, "chapters_written": 1, "pictures_painted": 1},
     "chapter 2/3, pictures 1/4"),
    ({"outline": True, "chapters": 3, "chapters_written": 3, "pictures_painted": 2},
     "pictures 2/4"),
    ({"outline": True, "chapters": 3, "chapters_written": 3, "pictures_painted": 4},
     "publishing"),
])
def test_current_step(steps: dict[str, Any] | None, expected: str) -> None:
    assert current_step(steps, "accepted") == expected


def test_message_rate_between_polls_and_across_a_broker_restart() -> None:
    first = Observation("e", 0.0, snapshot=snapshot(uptime=10.0))
    later = Observation("e", 2.0, snapshot=snapshot(
        uptime=12.0, counters={"requests": 50, "replies": 40, "partials": 5}))
    assert rates(first, later) == pytest.approx((10 + 10 + 0) / 2.0)
    restarted = Observation("e", 3.0, snapshot=snapshot(uptime=0.5))
    assert rates(later, restarted) is None
    assert rates(None, later) is None


# --- against a real broker ------------------------------------------------------------------

@pytest.fixture
def mesh() -> Iterator[Mesh]:
    """A broker on a loopback port (restartable on it) and echo agents in threads."""
    with Mesh(request_timeout=1.0) as m:
        yield m


def shown(poller: Poller, check: Callable[[Observation, dict[str, Any]], bool],
          timeout: float = 8.0) -> tuple[Observation, dict[str, Any]]:
    """Poll until the broker is up and `check(observation, snapshot)` holds."""
    last: list[Observation] = []

    def seen() -> tuple[Observation, dict[str, Any]] | None:
        obs = poller.poll()
        last[:] = [obs]
        if obs.snapshot is not None and check(obs, obs.snapshot):
            return obs, obs.snapshot
        return None
    return wait_for(seen, timeout, "the monitor to show it", interval=0.05,
                    describe=lambda: f"last view:\n{text_of(render(last[0]))}" if last else "")


def worker_lines(text: str, service: str = "echo") -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"│ {service} ")
            and ("idle" in line or "busy" in line)]


def test_monitor_follows_real_workers_a_death_and_a_broker_restart(mesh: Mesh,
                                                                  tmp_path: Path) -> None:
    # Given a broker with two echo workers in this process and one in another process
    mesh.add_echo(slots=2)
    spawner = Spawner(tmp_path)
    proc = spawner.echo(mesh.endpoint)
    poller = Poller(mesh.settings, timeout=0.5)
    try:
        obs, _ = shown(poller, lambda o, snap: snap["services"].get(
            "echo", {}).get("workers") == 3)
        text = text_of(render(obs))
        lines = worker_lines(text)
        assert len(lines) == 3
        assert all("builtin" in line and f"{os.uname().nodename}:" in line for line in lines)
        assert sum(f":{proc.pid}" in line for line in lines) == 1
        assert "stories in progress" not in text  # no story service registered

        # When a slow request with a story id is in flight
        with mesh.client() as client:
            rid = client.send("echo", {"sleep": 1.0}, corr="st-monitored")
            obs, _ = shown(poller, lambda o, snap: any(w["request"] for w in snap["workers"]))
            busy = [line for line in worker_lines(text_of(render(obs))) if "busy" in line]
            # Then the busy worker shows the request id and the story's correlation id
            assert len(busy) == 1
            assert rid in busy[0]
            assert "st-monitored" in busy[0]
            client.result(rid)
        obs, _ = shown(poller, lambda o, snap: snap["services"]["echo"]["served"] >= 1)
        assert "echo" in text_of(render(obs))

        # When the spawned worker dies without a word
        proc.signal(signal.SIGKILL)
        proc.wait(5)
        obs, snap = shown(poller, lambda o, snap: snap["services"]["echo"]["workers"] == 2)
        # Then its row is gone (the broker found it unreachable, or its heartbeats expired)
        lines = worker_lines(text_of(render(obs)))
        assert len(lines) == 2
        assert not any(f":{proc.pid}" in line for line in lines)
        counters = snap["counters"]
        assert counters["unreachable"] + counters["workers_expired"] >= 1

        # When the broker goes away and comes back on the same endpoint
        seen: dict[str, str] = {}

        def while_down() -> None:
            down = poller.poll()
            seen["down"] = text_of(render(down))
            seen["down_json"] = json.dumps(down.as_json())

        mesh.restart_broker(while_down)
        # Then the monitor said so, and shows the workers re-registered on the new broker
        assert "DOWN" in seen["down"]
        assert mesh.endpoint in seen["down"]
        assert json.loads(seen["down_json"])["up"] is False
        obs, snap = shown(poller, lambda o, snap: snap["services"].get(
            "echo", {}).get("workers") == 2)
        assert snap["uptime"] < 8.0  # a new broker process-lifetime
        text = text_of(render(obs))
        assert "UP" in text
        assert len(worker_lines(text)) == 2
    finally:
        poller.close()
        spawner.close()


def test_live_view_keeps_running_through_a_broker_outage(mesh: Mesh) -> None:
    # Given the live monitor running against a broker with one echo worker
    mesh.add_echo(slots=1)
    out = io.StringIO()
    console = Console(record=True, width=200, file=out, force_terminal=True, color_system=None)
    stop = threading.Event()
    codes: list[int] = []
    live = threading.Thread(target=lambda: codes.append(run_monitor(
        mesh.settings, refresh=0.1, console=console, stop=stop)), daemon=True)
    live.start()
    try:
        wait_for(lambda: "UP  broker" in out.getvalue(), 8.0, "the live view showing it up")
        # When the broker is down for a while, then back
        mesh.restart_broker(lambda: wait_for(lambda: "DOWN" in out.getvalue(), 8.0,
                                             "the live view showing it down"))
        wait_for(lambda: "│ echo " in out.getvalue()[out.getvalue().rfind("UP  broker"):]
                 and out.getvalue().rfind("UP  broker") > out.getvalue().rfind("DOWN"),
                 8.0, "the live view showing the broker and its worker back")
        # Then the monitor is still running, and showed the broker up, down and up again
        assert live.is_alive()
    finally:
        stop.set()
        live.join(5)
    assert codes == [0]
    text = console.export_text()
    first_down = text.find("DOWN")
    assert text.find("UP  broker") < first_down < text.rfind("UP  broker")
    assert "│ echo " in text[text.rfind("UP  broker"):]


def test_stories_in_progress_come_from_the_story_service(mesh: Mesh, tmp_path: Path) -> None:
    from storymesh.story.journal import open_journal
    from storymesh.story.service import run_story_service

    # Given a story service (and no author, so a story stays at its first step)
    story_settings = settings_mod.load("/dev/null", env={}, flags={
        "broker": mesh.endpoint, "heartbeat_interval": 0.1, "liveness": 4,
        "watch_slots": 1, "service_wait": 30.0, "journal": str(tmp_path / "j.db")})
    journal = open_journal(tmp_path / "j.db")
    mesh.serve(run_story_service, story_settings.story_section(), mesh.stop,
               context=mesh.context, journal=journal)
    poller = Poller(mesh.settings, timeout=1.0)
    try:
        shown(poller, lambda o, snap: o.stories is not None)
        # When a story is submitted
        with mesh.client() as client:
            corr = client.call("story.submit", {
                "plot": "A fox finds a lantern in the snow and shares its light.",
                "themes": ["kindness"], "target_age": "4-7", "length": "short",
                "art_style": "watercolor"}).payload["corr"]
        # Then the monitor lists it in progress, at its outline step
        obs, _ = shown(poller, lambda o, snap: any(s["corr"] == corr for s in o.stories or []))
        line = next(line for line in text_of(render(obs)).splitlines() if corr in line)
        assert "outline" in line
        assert ("running" in line or "accepted" in line)
    finally:
        poller.close()


def test_once_json_prints_one_snapshot(mesh: Mesh) -> None:
    mesh.add_echo(slots=1)
    codes: list[int] = []

    def once() -> dict[str, Any] | None:
        out = io.StringIO()
        codes.append(run_monitor(mesh.settings, once=True, as_json=True,
                                 console=Console(file=out, width=200, color_system=None)))
        data: dict[str, Any] = json.loads(out.getvalue())
        return data if data["snapshot"]["services"].get("echo", {}).get("workers") == 1 else None
    data = wait_for(once, 5.0, "one echo worker in the JSON snapshot", interval=0.1)
    assert codes[-1] == 0
    assert data["up"] is True
    assert data["snapshot"]["workers"][0]["meta"]["backend"] == "builtin"


def test_once_exits_2_when_the_broker_is_down() -> None:
    settings: Settings = fast_settings(broker="tcp://127.0.0.1:1")
    out = io.StringIO()
    code = run_monitor(settings, once=True, console=Console(file=out, width=120,
                                                             color_system=None))
    assert code == 2
    assert "DOWN" in out.getvalue()
