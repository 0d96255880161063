"""The story journal, one suite on both backends: a real SQLite file in tmp_path and a real
PostgreSQL server (a throwaway cluster, tests/conftest.py), with a fake wall clock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from storymesh import settings as settings_mod
from storymesh.core.schema import Status
from storymesh.errors import ConfigError
from storymesh.story.journal import (
    SCHEMA_VERSION,
    HistoryRow,
    Journal,
    JournalUnavailable,
    open_journal,
)
from storymesh.story.journal_sqlite import SqliteJournal
from testkit.clock import FakeClock
from testkit.postgres import PostgresCluster

REQUEST = {"plot": "A fox learns to share", "themes": ["sharing"], "target_age": "4-7",
           "length": "short", "art_style": "watercolor", "formats": ["pdf"]}
PNG = b"\x89PNG\r\n\x1a\n\x00\x01\xff" * 10


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.sqlite"


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, path: Path) -> str:
    """What the `journal` setting would say: a file path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(path)
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def journal(target: str, clock: FakeClock) -> Iterator[Journal]:
    j = open_journal(target, clock=clock)
    yield j
    j.close()


@pytest.fixture
def other(target: str, clock: FakeClock, journal: Journal) -> Iterator[Journal]:
    """A second story-service instance on the same store (another box, for PostgreSQL)."""
    j = open_journal(target, clock=clock)
    yield j
    j.close()


# -- stories ------------------------------------------------------------------------------


def test_create_get_and_status(journal: Journal, clock: FakeClock) -> None:
    # Given a new story
    created = journal.create_story("c1", REQUEST, "inst-a", principal="alice")
    # When it starts running and then completes with a title
    clock.advance(5)
    assert journal.set_status("c1", Status.RUNNING)
    clock.advance(5)
    assert journal.set_status("c1", "complete", title="Fox Shares")
    # Then the journal holds the request, the owner, the times and the final status
    assert created.status is Status.ACCEPTED
    assert created.created == clock.now - 10
    story = journal.get_story("c1")
    assert story is not None
    assert story.request == REQUEST
    assert story.principal == "alice"
    assert story.status is Status.COMPLETE
    assert story.done
    assert story.title == "Fox Shares"
    assert story.updated == clock.now
    assert story.created == clock.now - 10
    assert story.lease_owner == "inst-a"


def test_unknown_story_never_raises(journal: Journal) -> None:
    # Given an empty journal / When asking about a story that does not exist / Then
    assert journal.get_story("nope") is None
    assert journal.set_status("nope", Status.FAILED) is False
    assert journal.save_step("nope", "chapter", 1, {"text": "x"}) is False
    assert journal.get_step("nope", "chapter", 1) is None
    assert journal.steps("nope") == []
    assert journal.save_publication("nope", "pdf", b"%PDF") is False
    assert journal.publications("nope") == {}
    assert journal.record("nope", "a", "b", "REQUEST", "r1") is False
    assert journal.history("nope") == []
    assert journal.acquire("nope", "inst-a", 10) is False
    assert journal.lease_owner("nope") is None


def test_bad_kind_or_status_is_a_value_error(journal: Journal) -> None:
    # Given a story / When our own code passes an unknown kind or status / Then ValueError
    journal.create_story("c1", REQUEST, None)
    with pytest.raises(ValueError, match="'poem' is not a valid StepKind"):
        journal.save_step("c1", "poem", 0, {})
    with pytest.raises(ValueError, match="'sleeping' is not a valid Status"):
        journal.set_status("c1", "sleeping")


def test_create_is_idempotent(journal: Journal, clock: FakeClock) -> None:
    # Given a story already accepted
    first = journal.create_story("c1", REQUEST, "inst-a")
    # When a client retries the same submission later with other content
    clock.advance(3)
    again = journal.create_story("c1", {"plot": "other"}, "inst-b")
    # Then the first story is kept unchanged
    assert again == first
    assert journal.total_bytes() == first.size


def test_finished_status_is_final(journal: Journal) -> None:
    # Given a cancelled story
    journal.create_story("c1", REQUEST, "inst-a")
    assert journal.set_status("c1", Status.CANCELLED)
    # When the orchestrator later reports it complete
    changed = journal.set_status("c1", Status.COMPLETE, title="late")
    # Then the cancel stands
    story = journal.get_story("c1")
    assert changed is False
    assert story is not None
    assert story.status is Status.CANCELLED
    assert story.title is None


def test_failed_keeps_error(journal: Journal) -> None:
    # Given a running story / When it fails / Then the error is kept
    journal.create_story("c1", REQUEST, None)
    journal.set_status("c1", Status.FAILED, error="model_error: out of memory")
    story = journal.get_story("c1")
    assert story is not None
    assert story.error == "model_error: out of memory"


def test_list_newest_first_and_by_status(journal: Journal, clock: FakeClock) -> None:
    # Given three stories created a second apart, one complete
    for corr in ("c1", "c2", "c3"):
        journal.create_story(corr, REQUEST, None)
        clock.advance(1)
    journal.set_status("c2", Status.COMPLETE)
    # When listing / Then newest first, limited, filtered
    assert [s.corr for s in journal.list_stories()] == ["c3", "c2", "c1"]
    assert [s.corr for s in journal.list_stories(limit=2)] == ["c3", "c2"]
    assert [s.corr for s in journal.list_stories(statuses=[Status.ACCEPTED])] == ["c3", "c1"]
    assert journal.list_stories(statuses=[]) == []


# -- steps --------------------------------------------------------------------------------


def test_step_is_written_once(journal: Journal) -> None:
    # Given a story with chapter 1 saved
    journal.create_story("c1", REQUEST, None)
    assert journal.save_step("c1", "chapter", 1, {"text": "Once upon a time"}) is True
    # When chapter 1 is saved again (a retry, a takeover)
    again = journal.save_step("c1", "chapter", 1, {"text": "Something else"})
    # Then the first data stays and the second attempt is counted, not written
    step = journal.get_step("c1", "chapter", 1)
    assert again is False
    assert step is not None
    assert step.data == {"text": "Once upon a time"}
    assert step.attempts == 2
    assert step.done


def test_picture_blob_and_kinds_are_separate(journal: Journal) -> None:
    # Given a chapter, its picture and the cover, all with index 1 or 0
    journal.create_story("c1", REQUEST, None)
    journal.save_step("c1", "outline", 0, {"title": "Fox", "chapters": [{"title": "a"}]})
    journal.save_step("c1", "chapter", 1, {"text": "t"})
    journal.save_step("c1", "picture", 1, {"seed": 7}, PNG)
    journal.save_step("c1", "cover", 0, {"seed": 1}, b"\x00cover\xff")
    # When reading them back / Then each kind keeps its own data and binary
    picture = journal.get_step("c1", "picture", 1)
    cover = journal.get_step("c1", "cover", 0)
    assert picture is not None
    assert picture.blob == PNG
    assert picture.data == {"seed": 7}
    assert cover is not None
    assert cover.blob == b"\x00cover\xff"
    assert journal.get_step("c1", "chapter", 1) is not None
    assert journal.get_step("c1", "chapter", 2) is None
    assert [s.blob for s in journal.steps("c1", with_blobs=False)] == [None] * 4


def test_step_timestamps_show_overlap(journal: Journal, clock: FakeClock) -> None:
    # Given chapter 1 written, then picture 1 started while chapter 2 is being written
    journal.create_story("c1", REQUEST, None)
    journal.mark_step_started("c1", "chapter", 1)
    clock.advance(2)
    journal.save_step("c1", "chapter", 1, {"text": "one"})
    journal.mark_step_started("c1", "picture", 1)
    journal.mark_step_started("c1", "chapter", 2)
    clock.advance(3)
    # When only the picture has finished
    journal.save_step("c1", "picture", 1, {}, PNG)
    # Then the unfinished chapter shows as started, with no data, and is not "saved"
    steps = {(s.kind, s.index): s for s in journal.steps("c1")}
    assert steps[("chapter", 1)].started == clock.now - 5
    assert steps[("chapter", 1)].finished == clock.now - 3
    assert steps[("picture", 1)].started == clock.now - 3
    assert steps[("picture", 1)].finished == clock.now
    assert steps[("chapter", 2)].data is None
    assert not steps[("chapter", 2)].done
    assert journal.get_step("c1", "chapter", 2) is None
    # And the picture ran while chapter 2 was being written
    assert steps[("picture", 1)].started < clock.now
    assert steps[("chapter", 2)].finished is None
    # And marking a finished step started again changes nothing
    assert journal.mark_step_started("c1", "chapter", 1) is False
    assert journal.steps("c1")[0].started == clock.now - 5


def test_save_without_start_uses_one_time(journal: Journal, clock: FakeClock) -> None:
    # Given a story / When a step is saved that was never marked started
    journal.create_story("c1", REQUEST, None)
    journal.save_step("c1", "outline", 0, {"title": "t"})
    # Then it started and finished now, with one attempt
    (step,) = journal.steps("c1")
    assert step.started == step.finished == clock.now
    assert step.attempts == 1


# -- publications and history ---------------------------------------------------------------


def test_publications_round_trip_binary(journal: Journal) -> None:
    # Given a story / When publications with every byte value are saved, one replaced
    journal.create_story("c1", REQUEST, None)
    pdf = bytes(range(256)) * 4
    journal.save_publication("c1", "pdf", b"old")
    journal.save_publication("c1", "pdf", pdf)
    journal.save_publication("c1", "html", "<p>Fuchs & Bär</p>".encode())
    # Then they come back byte for byte, and the size counts each byte once
    assert journal.publications("c1") == {"pdf": pdf, "html": "<p>Fuchs & Bär</p>".encode()}
    story = journal.get_story("c1")
    assert story is not None
    assert journal.total_bytes() == story.size
    request_size = journal.create_story("c2", REQUEST, None).size
    assert story.size == request_size + len(pdf) + len("<p>Fuchs & Bär</p>".encode())


def test_history_in_recorded_order(journal: Journal, clock: FakeClock) -> None:
    # Given a story / When messages are recorded, one with an explicit earlier time
    journal.create_story("c1", REQUEST, None)
    journal.record("c1", "story", "story.author", "REQUEST", "r1")
    clock.advance(1)
    journal.record("c1", "story.author", "story", "PARTIAL", "r1")
    journal.record("c1", "story.author", "story", "FINAL", "r1", time=clock.now - 0.5)
    # Then history is in recorded order with the times given
    assert journal.history("c1") == [
        HistoryRow("story", "story.author", "REQUEST", clock.now - 1, "r1"),
        HistoryRow("story.author", "story", "PARTIAL", clock.now, "r1"),
        HistoryRow("story.author", "story", "FINAL", clock.now - 0.5, "r1"),
    ]


# -- leases -------------------------------------------------------------------------------


def test_lease_is_exclusive(journal: Journal, other: Journal) -> None:
    # Given instance A owns a story through its journal
    journal.create_story("c1", REQUEST, None)
    assert journal.acquire("c1", "inst-a", 10)
    # When instance B, on another connection to the same file, tries to take it
    taken = other.acquire("c1", "inst-b", 10)
    # Then B is refused and A still holds it (and may re-acquire)
    assert taken is False
    assert other.lease_owner("c1") == "inst-a"
    assert journal.acquire("c1", "inst-a", 10)


def test_expired_lease_is_taken_over(journal: Journal, other: Journal,
                                     clock: FakeClock) -> None:
    # Given A leased a story for 10 s at creation and then died
    journal.create_story("c1", REQUEST, "inst-a", ttl=10)
    clock.advance(9.9)
    assert other.acquire("c1", "inst-b", 10) is False
    # When the lease expires
    clock.advance(0.2)
    # Then B takes it over, and A, coming back, cannot renew or release it
    assert journal.lease_owner("c1") is None
    assert other.acquire("c1", "inst-b", 10)
    assert journal.renew("inst-a", 10) == 0
    assert journal.release("c1", "inst-a") is False
    assert journal.lease_owner("c1") == "inst-b"


def test_renew_extends_all_held_leases(journal: Journal, other: Journal,
                                       clock: FakeClock) -> None:
    # Given A holds two stories and B one, all for 10 s
    for corr in ("c1", "c2"):
        journal.create_story(corr, REQUEST, "inst-a", ttl=10)
    other.create_story("c3", REQUEST, "inst-b", ttl=10)
    # When A renews after 8 s and 8 s more pass
    clock.advance(8)
    renewed = journal.renew("inst-a", 10)
    clock.advance(8)
    # Then A's leases are alive and B's expired, so B could not hold onto c3
    assert renewed == 2
    assert other.acquire("c1", "inst-b", 10) is False
    assert journal.lease_owner("c2") == "inst-a"
    assert journal.lease_owner("c3") is None
    assert journal.acquire("c3", "inst-a", 10)


def test_release_frees(journal: Journal, other: Journal) -> None:
    # Given A holds a story / When B tries to release it, then A releases it
    journal.create_story("c1", REQUEST, "inst-a")
    assert other.release("c1", "inst-b") is False
    assert journal.release("c1", "inst-a")
    # Then it is free for B at once
    assert other.lease_owner("c1") is None
    assert other.acquire("c1", "inst-b", 10)


def test_claimable_only_unfinished_free_or_expired(journal: Journal, other: Journal,
                                                   clock: FakeClock) -> None:
    # Given stories in every state of ownership and status, created a second apart
    stories = [("free", None, Status.ACCEPTED), ("held", "inst-a", Status.RUNNING),
               ("short", "inst-a", Status.RUNNING), ("done", None, Status.COMPLETE),
               ("gone", None, Status.CANCELLED), ("unowned", None, Status.RUNNING)]
    for corr, owner, status in stories:
        journal.create_story(corr, REQUEST, owner, ttl=100 if corr == "held" else 5)
        journal.set_status(corr, status)
        clock.advance(1)
    # When the short lease has expired (A died) and B looks for work
    clock.advance(5)
    claim = other.claimable("inst-b", 10)
    # Then B sees the unfinished stories nobody holds, oldest first, up to the limit
    assert claim == ["free", "short", "unowned"]
    assert other.claimable("inst-b", 2) == ["free", "short"]
    assert journal.claimable("inst-a", 10) == ["free", "short", "unowned"]


# -- retention ----------------------------------------------------------------------------


def _story_with_picture(journal: Journal, corr: str, status: Status, size: int) -> None:
    journal.create_story(corr, REQUEST, None)
    journal.save_step(corr, "picture", 1, {}, b"\x01" * size)
    journal.set_status(corr, status)


def test_prune_by_age_keeps_running(journal: Journal, clock: FakeClock) -> None:
    # Given old finished stories, an old running one and a recent finished one
    _story_with_picture(journal, "old-done", Status.COMPLETE, 10)
    _story_with_picture(journal, "old-failed", Status.FAILED, 10)
    _story_with_picture(journal, "old-running", Status.RUNNING, 10)
    journal.record("old-done", "a", "b", "REQUEST", "r")
    journal.save_publication("old-done", "pdf", b"%PDF")
    clock.advance(100)
    _story_with_picture(journal, "new-done", Status.COMPLETE, 10)
    # When pruning what finished more than 50 s ago
    removed = journal.prune(max_age=50, max_bytes=None)
    # Then only the old finished stories are gone, with everything they held
    assert removed == 2
    assert {s.corr for s in journal.list_stories()} == {"old-running", "new-done"}
    assert journal.history("old-done") == []
    assert journal.publications("old-done") == {}
    assert journal.steps("old-done") == []


def test_prune_by_size_oldest_finished_first(journal: Journal, clock: FakeClock) -> None:
    # Given three finished stories of ~1000 bytes and a running one, a second apart
    for corr, status in (("a", Status.COMPLETE), ("run", Status.RUNNING),
                         ("b", Status.FAILED), ("c", Status.COMPLETE)):
        _story_with_picture(journal, corr, status, 1000)
        clock.advance(1)
    sizes = {s.corr: s.size for s in journal.list_stories()}
    assert journal.total_bytes() == sum(sizes.values()) > 4000
    # When the cap leaves room for about two stories
    removed = journal.prune(max_age=None, max_bytes=sizes["run"] + sizes["c"] + 10)
    # Then the oldest finished stories went until it fits; the running one stays
    assert removed == 2
    assert {s.corr for s in journal.list_stories()} == {"run", "c"}
    assert journal.total_bytes() == sizes["run"] + sizes["c"]
    # And a cap below what running stories need never deletes them
    assert journal.prune(max_age=None, max_bytes=0) == 1
    assert [s.corr for s in journal.list_stories()] == ["run"]


def test_prune_nothing_to_do(journal: Journal) -> None:
    # Given a small journal / When pruning with generous limits or none / Then nothing goes
    _story_with_picture(journal, "a", Status.COMPLETE, 10)
    assert journal.prune(max_age=None, max_bytes=None) == 0
    assert journal.prune(max_age=3600, max_bytes=10**9) == 0
    assert journal.get_story("a") is not None


# -- the store -----------------------------------------------------------------------------


def test_reopen_keeps_everything(target: str, clock: FakeClock) -> None:
    # Given a journal with a story in progress, closed as if the service stopped
    with open_journal(target, clock=clock) as journal:
        journal.create_story("c1", REQUEST, "inst-a", principal="alice", ttl=10)
        journal.set_status("c1", Status.RUNNING)
        journal.save_step("c1", "outline", 0, {"title": "Fox"})
        journal.save_step("c1", "picture", 1, {"seed": 3}, PNG)
        journal.mark_step_started("c1", "chapter", 2)
        journal.record("c1", "story", "story.author", "REQUEST", "r1")
        journal.save_publication("c1", "pdf", b"%PDF-1.4\x00")
        before = journal.steps("c1"), journal.get_story("c1")
    # When a new service opens the same file after the lease ran out
    clock.advance(11)
    with open_journal(target, clock=clock) as reopened:
        # Then it sees the same story, steps, history and publications, and may claim it
        assert (reopened.steps("c1"), reopened.get_story("c1")) == before
        assert reopened.history("c1")[0].id == "r1"
        assert reopened.publications("c1") == {"pdf": b"%PDF-1.4\x00"}
        assert reopened.claimable("inst-b", 5) == ["c1"]


def test_wal_mode_and_schema_version(path: Path) -> None:
    # Given an open SQLite journal / When another connection inspects the file
    journal = SqliteJournal(path)
    with sqlite3.connect(path) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    journal.close()
    # Then the file is in WAL mode with the current schema version
    assert mode == "wal"
    assert version == SCHEMA_VERSION


def test_newer_schema_is_refused(path: Path) -> None:
    # Given a journal file written by a newer storymesh
    SqliteJournal(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    # When opening it / Then a config error names the problem
    with pytest.raises(ConfigError, match="newer"):
        SqliteJournal(path)


def test_concurrent_writers_do_not_lock(journal: Journal, other: Journal) -> None:
    # Given two instances on one file and a thread sharing each instance's journal
    errors: list[BaseException] = []

    def work(j: Journal, name: str) -> None:
        try:
            for i in range(60):
                corr = f"{name}-{i}"
                j.create_story(corr, REQUEST, name)
                j.save_step(corr, "chapter", 1, {"text": "x" * 100})
                j.record(corr, name, "story.author", "REQUEST", str(i))
                j.acquire(f"a-{i // 2}", name, 5)
                j.renew(name, 5)
        except BaseException as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(j, n))
               for j, n in ((journal, "a"), (other, "b"), (journal, "c"), (other, "d"))]
    # When they all write at once
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # Then nothing failed and every write landed
    assert errors == []
    assert len(journal.list_stories(limit=1000)) == 240
    assert all(len(other.history(f"{n}-59")) == 1 for n in "abcd")


# -- several services on one store ---------------------------------------------------------


def test_racing_savers_write_a_step_once(journal: Journal, other: Journal) -> None:
    # Given one story and two services that both computed its chapter 1
    journal.create_story("c1", REQUEST, "inst-a")
    barrier = threading.Barrier(8)
    wins: list[bool] = []

    def save(j: Journal, n: int) -> None:
        barrier.wait()
        wins.append(j.save_step("c1", "chapter", 1, {"text": f"take {n}"}))

    # When eight threads on the two connections save it at once
    threads = [threading.Thread(target=save, args=((journal, other)[n % 2], n))
               for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # Then exactly one write landed, and it is the step every reader sees
    assert sorted(wins) == [False] * 7 + [True]
    step = other.get_step("c1", "chapter", 1)
    assert step is not None
    assert step.attempts == 8
    assert [s.data for s in journal.steps("c1")] == [step.data]


def test_racing_takers_of_an_expired_lease_one_wins(journal: Journal, other: Journal,
                                                     clock: FakeClock) -> None:
    # Given a story whose owner died and whose lease ran out
    journal.create_story("c1", REQUEST, "dead", ttl=5)
    clock.advance(6)
    barrier = threading.Barrier(6)
    won: list[str] = []

    def take(j: Journal, name: str) -> None:
        barrier.wait()
        if j.acquire("c1", name, 30):
            won.append(name)

    # When six instances on the two connections claim it at once
    threads = [threading.Thread(target=take, args=((journal, other)[n % 2], f"inst-{n}"))
               for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # Then exactly one owns it
    assert len(won) == 1
    assert journal.lease_owner("c1") == won[0]


# -- choosing the backend ------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["mysql://u@db/story", "sqlite:///tmp/j.db",
                                     "http://db/journal", "Postgresql+psycopg://u@db/x"])
def test_unknown_scheme_is_a_config_error(setting: str, tmp_path: Path) -> None:
    # Given a journal setting with a scheme that is not PostgreSQL's
    # When it is opened / Then it is a config error naming the key, and no file appears
    with pytest.raises(ConfigError, match=r"journal = .*unknown scheme"):
        open_journal(setting)
    assert not Path(setting.split("://", 1)[1]).exists()


def test_a_plain_path_is_a_sqlite_file(tmp_path: Path) -> None:
    # Given a path with a colon in a folder name (not a scheme)
    path = tmp_path / "a:b" / "journal.db"
    # When it is opened / Then it is a SQLite journal at that path
    with open_journal(path) as journal:
        assert isinstance(journal, SqliteJournal)
        assert journal.target == str(path)
    assert path.exists()


def test_postgres_schema_version_and_newer_refused(postgres_url: str) -> None:
    import psycopg

    # Given a database the journal created on first use
    with open_journal(postgres_url) as journal:
        assert "password" not in journal.target
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)]
        # When a newer storymesh has migrated it
        conn.execute("UPDATE schema_version SET version = version + 1")
    # Then this one refuses it with a config error
    with pytest.raises(ConfigError, match="newer"):
        open_journal(postgres_url)


def test_postgres_services_starting_together_create_the_schema_once(
        postgres_url: str) -> None:
    # Given an empty database / When four services open it at the same moment
    barrier = threading.Barrier(4)
    opened: list[Journal] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            opened.append(open_journal(postgres_url))
        except BaseException as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # Then all of them work on the one schema
    assert errors == []
    assert len(opened) == 4
    opened[0].create_story("c1", REQUEST, "inst-a")
    assert all(j.get_story("c1") is not None for j in opened)
    for j in opened:
        j.close()


def test_postgres_reconnects_after_the_server_drops_it(postgres_url: str,
                                                       postgres: PostgresCluster) -> None:
    # Given an open journal
    with open_journal(postgres_url) as journal:
        journal.create_story("c1", REQUEST, "inst-a")
        # When the server ends its connection (a restart, a fail-over)
        name = postgres_url.rsplit("/", 1)[1]
        postgres.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     f"WHERE datname = '{name}'")
        # Then the call that sees the break raises, and the next one works on a new connection
        story = None
        for _ in range(3):
            try:
                story = journal.get_story("c1")
                break
            except JournalUnavailable:
                continue
        assert story is not None
        assert story.corr == "c1"


@pytest.mark.parametrize("setting", ["mysql://u@db/story", "redis://cache/0"])
def test_unknown_scheme_stops_the_settings_at_load_naming_the_key(setting: str) -> None:
    # Given a journal setting with an unknown scheme, in the environment
    # When the settings are loaded / Then they fail at once, naming the key and its source
    with pytest.raises(ConfigError, match=r"journal \(from environment\).*unknown scheme"):
        settings_mod.load("/dev/null", env={"STORYMESH_JOURNAL": setting})
    # And a PostgreSQL URL or a plain path loads as it is
    for good in ("postgresql://story@db/stories", "/var/lib/storymesh/journal.db"):
        assert settings_mod.load("/dev/null", env={"STORYMESH_JOURNAL": good}).journal == good
