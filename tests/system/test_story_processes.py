"""The story pipeline as real processes: `storymesh up`, `storymesh story`, killed agents and a
killed story service, on loopback TCP with real signals.

Agents are the embedded defaults (under `storymesh up`) or the sleep-based ones
(`python -m testkit.sleepy ROLE --cost S`), whose steps take a set time and whose
logs say what they started and finished. Each test has its own journal in tmp_path and short
heartbeats (0.15 s x 4). Every wait is bounded; a failed one shows the processes' logs.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pypdf
import pytest

from storymesh.settings import Settings
from storymesh.story.api import StoryClient
from storymesh.story.journal import StepKind, open_journal
from testkit.mesh import (
    HEARTBEAT,
    LIVENESS,
    REPO,
    START_TIMEOUT,
    Proc,
    Spawner,
    free_endpoint,
    snapshot,
    worker_pids,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(120)]

UP_READY = 45.0  # five cold `python -m storymesh` starts on a busy two-core machine
STORY_TIMEOUT = 60.0
STARTED = re.compile(r"started (\S+) \(pid (\d+)\)")
RESTARTED = re.compile(r"(\S+) restarted \(pid (\d+)\)")
STORY_ID = re.compile(r"\bst-[0-9a-f]{16}\b")


def mesh_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for every daemon of a test: its journal, short heartbeats, small pictures."""
    return {"STORYMESH_JOURNAL": str(tmp_path / "journal.db"),
            "STORYMESH_HEARTBEAT_INTERVAL": str(HEARTBEAT),
            "STORYMESH_LIVENESS": str(LIVENESS),
            "STORYMESH_PICTURE_SIZE": "128",
            "STORYMESH_STEP_TIMEOUT": "60",
            **extra}


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def log_text(proc: Proc) -> str:
    return proc.log.read_text(errors="replace")


def stories(endpoint: str, timeout: float = 30.0) -> StoryClient:
    return StoryClient(endpoint, settings=Settings().peer_section(), timeout=timeout)


# --- `storymesh up` ---------------------------------------------------------------------------

class Up:
    """A `storymesh up` process, and the children it says it started (from its log)."""

    def __init__(self, spawner: Spawner, endpoint: str, *args: str,
                 env: dict[str, str]) -> None:
        self.spawner = spawner
        self.endpoint = endpoint
        self.proc = spawner.spawn("up", "up", "--bind", endpoint, "--config", "/dev/null",
                                  "--log-level", "info", *args, env=env)

    def children(self) -> dict[str, int]:
        """name -> pid, the latest start of each child."""
        found: dict[str, int] = {}
        for pattern in (STARTED, RESTARTED):
            for name, pid in pattern.findall(log_text(self.proc)):
                found[name] = int(pid)
        return found

    def all_pids(self) -> set[int]:
        text = log_text(self.proc)
        return {int(pid) for _, pid in STARTED.findall(text) + RESTARTED.findall(text)}

    def wait_ready(self, count: int) -> dict[str, int]:
        self.spawner.wait_until(lambda: "ready on" in log_text(self.proc), UP_READY,
                                "storymesh up to report the mesh ready")
        children = self.children()
        assert len(children) == count, children
        return children

    def kill_leftovers(self) -> None:
        """Teardown: SIGKILL any child still running (children have their own session, so
        killing `up` itself would leave them behind)."""
        for pid in self.all_pids():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def up_factory(spawner: Spawner) -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        up.kill_leftovers()


def run_cli(*args: str, timeout: float = STORY_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """A one-shot `storymesh` command, wide output so rich tables do not truncate."""
    env = Spawner.env({"COLUMNS": "250"})
    return subprocess.run([sys.executable, "-m", "storymesh", *args], cwd=REPO, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_up_makes_a_book_with_story_and_stops_cleanly_on_sigterm(
        spawner: Spawner, up_factory: list[Up], tmp_path: Path) -> None:
    # Given `storymesh up` on a loopback port, with the embedded default agents
    endpoint = free_endpoint()
    up = Up(spawner, endpoint, env=mesh_env(tmp_path))
    up_factory.append(up)
    children = up.wait_ready(count=5)
    assert set(children) == {"broker", "author", "illustrator", "publisher", "story"}
    out = tmp_path / "book"
    # When `storymesh story` asks it for a three-chapter book in all three formats
    made = run_cli("story", "--broker", endpoint, "--plot", "A brave mouse looks for the moon",
                   "--chapters", "3", "--seed", "3", "--out", str(out),
                   "--format", "pdf", "--format", "html", "--format", "epub")
    # Then the book is written: a PDF with a cover and a page or more per chapter, each
    # chapter's picture embedded, plus HTML and EPUB
    assert made.returncode == 0, made.stdout + made.stderr + spawner.tails()
    files = {p.suffix: p for p in out.iterdir()}
    assert set(files) == {".pdf", ".html", ".epub"}
    pdf = pypdf.PdfReader(io.BytesIO(files[".pdf"].read_bytes()))
    assert len(pdf.pages) >= 1 + 3
    pictures = {image.data for page in pdf.pages for image in page.images}
    assert len(pictures) >= 1 + 3  # the cover and three different chapter pictures
    assert files[".html"].read_bytes().count(b"<img") >= 4
    assert files[".epub"].read_bytes().startswith(b"PK")
    # And `storymesh history ID` lists every step of that story
    (corr,) = set(STORY_ID.findall(made.stdout))
    history = run_cli("history", corr, "--broker", endpoint, timeout=START_TIMEOUT * 2)
    assert history.returncode == 0, history.stdout + history.stderr
    cells = [[c.strip() for c in line.strip().strip("│").split("│")]
             for line in history.stdout.splitlines() if "->" in line]
    replies = Counter((row[1], row[4]) for row in cells if row[3] == "story")
    assert replies[("author", "outline")] == 1, history.stdout
    assert replies[("author", "chapter")] == 3, history.stdout
    assert replies[("illustrator", "cover")] == 1, history.stdout
    assert replies[("illustrator", "picture")] == 3, history.stdout
    assert replies[("publisher", "publications")] == 1, history.stdout
    # When `up` gets SIGTERM
    up.proc.signal(signal.SIGTERM)
    # Then it exits 0 and none of its children is left running
    assert up.proc.wait(30.0) == 0, up.proc.tail(3000)
    assert not [name for name, pid in children.items() if alive(pid)]


def test_up_restarts_a_killed_child_and_stops_all_of_them(
        spawner: Spawner, up_factory: list[Up], tmp_path: Path) -> None:
    # Given `storymesh up` with two illustrators
    endpoint = free_endpoint()
    up = Up(spawner, endpoint, "--illustrators", "2", env=mesh_env(tmp_path))
    up_factory.append(up)
    children = up.wait_ready(count=6)
    victim = children["illustrator-2"]
    # When one illustrator is SIGKILLed
    os.kill(victim, signal.SIGKILL)
    # Then `up` logs the crash and starts it again, and the new one registers
    spawner.wait_until(lambda: up.children()["illustrator-2"] != victim, 15.0,
                       "illustrator-2 restarted")
    assert f"illustrator-2 (pid {victim}) killed by SIGKILL" in log_text(up.proc)
    fresh = up.children()["illustrator-2"]
    spawner.workers(endpoint, "story.illustrator", [children["illustrator-1"], fresh],
                    timeout=30.0)
    # When `up` gets SIGTERM
    up.proc.signal(signal.SIGTERM)
    # Then it exits 0 and every process it ever started is gone, the restarted one too
    assert up.proc.wait(30.0) == 0, up.proc.tail(3000)
    assert not [pid for pid in up.all_pids() if alive(pid)]
    assert snapshot(endpoint, timeout=0.3) is None  # the broker is gone too


def test_up_stops_with_a_clear_error_when_an_agent_cannot_start(
        spawner: Spawner, up_factory: list[Up], tmp_path: Path) -> None:
    # Given a configuration the author refuses (an unknown backend)
    endpoint = free_endpoint()
    # When `storymesh up` starts
    up = Up(spawner, endpoint, env=mesh_env(tmp_path, STORYMESH_AUTHOR_BACKEND="nope"))
    up_factory.append(up)
    # Then it stops by itself with the usage exit code, saying which child and why
    code = up.proc.wait(45.0)
    text = log_text(up.proc)
    assert code == 2, text
    assert "author backend 'nope'" in text  # the author's own message
    assert re.search(r"author \(pid \d+\) exited with code 2: a usage or configuration", text)
    # And no child is left behind
    assert up.all_pids()
    assert not [pid for pid in up.all_pids() if alive(pid)]


# --- agents and the story service killed mid-story -------------------------------------------

def spawn_story_service(spawner: Spawner, endpoint: str, env: dict[str, str]) -> Proc:
    return spawner.spawn("story", "agent", "story", "--broker", endpoint, "--config",
                         "/dev/null", "--log-level", "info", env=env)


def wait_services(spawner: Spawner, endpoint: str, pids: dict[str, list[int]]) -> None:
    """Wait until each service's workers come from exactly the processes `pids` (a process
    may hold several connections: the story service has a few per service)."""
    def registered() -> bool:
        snap = snapshot(endpoint)
        if snap is None:
            return False
        found = worker_pids(snap)
        return all(found.get(service) == set(wanted) for service, wanted in pids.items())
    spawner.wait_until(registered, 30.0, f"workers registered: {pids}")


def busy_workers(endpoint: str, service: str) -> dict[int, str]:
    """pid -> id of the request it holds, for the workers of `service` busy right now."""
    snap = snapshot(endpoint) or {"workers": []}
    return {w["meta"]["pid"]: w["request"]["id"] for w in snap["workers"]
            if w["service"] == service and w["request"] is not None}


def test_a_killed_illustrator_does_not_stop_the_story(spawner: Spawner, tmp_path: Path) -> None:
    # Given a broker, the story service, a quick author, the real publisher and two
    # illustrators that take a second per picture
    endpoint = free_endpoint()
    env = mesh_env(tmp_path)
    spawner.broker(endpoint)
    story = spawn_story_service(spawner, endpoint, env)
    author = spawner.sleepy("author", endpoint, 0.1, env)
    painters = {p.pid: p for p in (spawner.sleepy("illustrator", endpoint, 1.0, env)
                                   for _ in range(2))}
    publisher = spawner.spawn("publisher", "agent", "publisher", "--broker", endpoint,
                              "--config", "/dev/null", env=env)
    wait_services(spawner, endpoint, {
        "story.submit": [story.pid], "story.author": [author.pid],
        "story.illustrator": list(painters), "story.publisher": [publisher.pid]})
    with stories(endpoint) as client:
        corr = client.submit("A mouse and a moon", chapters=4, formats=["pdf"], seed=5)
        # When both illustrators are painting and one of them is SIGKILLed
        def both_busy() -> dict[int, str] | None:
            busy = busy_workers(endpoint, "story.illustrator")
            return busy if len(busy) == 2 else None
        busy = spawner.wait_until(both_busy, 20.0, "both illustrators painting")
        victim_pid, lost_rid = next(iter(busy.items()))
        painters[victim_pid].signal(signal.SIGKILL)
        survivor = next(p for pid, p in painters.items() if pid != victim_pid)
        # Then the story still completes
        outcome = client.wait(corr)
    assert outcome["status"] == "complete", (outcome, spawner.tails())
    # And every chapter is illustrated, in the journal and in the book
    with open_journal(tmp_path / "journal.db") as journal:
        steps = journal.steps(corr)
    painted = {s.index for s in steps if s.kind == StepKind.PICTURE and s.blob}
    assert painted == {0, 1, 2, 3}
    assert any(s.kind == StepKind.COVER and s.blob for s in steps)
    pdf = pypdf.PdfReader(io.BytesIO(outcome["publications"]["pdf"]))
    assert sum(len(page.images) for page in pdf.pages) >= 5
    # And the picture the killed illustrator held was painted by the other one
    assert f"start picture {lost_rid}" in log_text(survivor), survivor.tail()


def test_a_restarted_story_service_finishes_the_story_without_redoing_steps(
        spawner: Spawner, tmp_path: Path) -> None:
    # Given a story service with short leases and an author that takes 0.4 s per chapter
    endpoint = free_endpoint()
    env = mesh_env(tmp_path, STORYMESH_LEASE_TTL="1.5")
    spawner.broker(endpoint)
    first = spawn_story_service(spawner, endpoint, env)
    author = spawner.sleepy("author", endpoint, 0.4, env)
    painter = spawner.sleepy("illustrator", endpoint, 0.2, env)
    publisher = spawner.sleepy("publisher", endpoint, 0.1, env)
    wait_services(spawner, endpoint, {
        "story.submit": [first.pid], "story.author": [author.pid],
        "story.illustrator": [painter.pid], "story.publisher": [publisher.pid]})
    chapters = 6
    with stories(endpoint) as client, open_journal(tmp_path / "journal.db") as journal:
        corr = client.submit("A mouse and a moon", chapters=chapters, seed=9)

        def written() -> int:
            return sum(1 for s in journal.steps(corr, with_blobs=False)
                       if s.kind == StepKind.CHAPTER and s.finished is not None)
        # When the story service is SIGKILLed after two chapters, mid-story
        spawner.wait_until(lambda: written() >= 2, 20.0, "two chapters written")
        first.signal(signal.SIGKILL)
        first.wait(5.0)
        assert written() < chapters
        # And started again on the same journal
        second = spawn_story_service(spawner, endpoint, env)
        wait_services(spawner, endpoint, {"story.watch": [second.pid]})
        # Then it takes the story over when the lease runs out and finishes it
        outcome = client.wait(corr)
        assert outcome["status"] == "complete", (outcome, spawner.tails())
        steps = journal.steps(corr, with_blobs=False)
    # And no chapter was written twice: each journalled once, each computed once
    chapter_steps = [s for s in steps if s.kind == StepKind.CHAPTER]
    assert sorted(s.index for s in chapter_steps) == list(range(chapters))
    assert all(s.attempts == 1 for s in chapter_steps), [(s.index, s.attempts)
                                                         for s in chapter_steps]
    written_by_author = Counter(re.findall(r"start chapter-(\d+)", log_text(author)))
    assert written_by_author == {str(i): 1 for i in range(chapters)}, author.tail()
    # And no picture was painted twice either
    painted = Counter(re.findall(r"start picture (\S+)", log_text(painter)))
    assert len(painted) == chapters + 1, painter.tail()
    assert set(painted.values()) == {1}, painter.tail()
    assert "resuming story" in log_text(second)
