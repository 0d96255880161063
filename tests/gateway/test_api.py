"""The HTTP API against a real gateway (uvicorn on a loopback port, in a thread) in front of
a real in-process mesh (broker, sleepy agents, story service): every route of docs/http.md,
every error mapping, keys and owners, idempotent submissions, and SSE resumption."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storymesh.errors import ConfigError, RequestFailed, RequestTimeout
from storymesh.gateway.errors import ApiError, from_mesh
from storymesh.gateway.keys import KeyRing, add_key
from storymesh.gateway.server import GatewayServer, load_keys
from testkit.gateway import error_of, gateway_settings
from testkit.mesh import REPO, fast_settings, new_broker, wait_for
from testkit.sleepy import Costs, SleepyMesh

# A story of 2 chapters takes about 0.05 + 2 x 0.3 + 0.1 + 0.05 s: long enough to look at it
# while it runs, short enough for many tests.
COSTS = Costs(outline=0.05, chapter=0.3, picture=0.1, publish=0.05)
STORY = {"plot": "A brave mouse looks for the moon", "themes": ["courage"], "chapters": 2}
WAIT = 30.0


@pytest.fixture(scope="module")
def mesh() -> Iterator[SleepyMesh]:
    with SleepyMesh(fast_settings(), COSTS, illustrators=2) as running:
        yield running


@pytest.fixture
def http(gateway: GatewayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=WAIT) as client:
        yield client


def read_events(client: httpx.Client, url: str, *, limit: int | None = None,
                headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The SSE events of `url` (id, event, data parsed), up to `limit` or the stream's end."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                    if limit is not None and len(events) >= limit:
                        break
                current = {}
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                current["data"] = json.loads(value)
            elif field in ("id", "event"):
                current[field] = value
    return events


def submit(client: httpx.Client, story: dict[str, Any] | None = None, *,
           key: str | None = None) -> str:
    headers = {"Idempotency-Key": key} if key is not None else {}
    response = client.post("/stories", json=story or STORY, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


# --- health, status, schema, page ---------------------------------------------------------

def test_health_names_every_story_service_and_narrows_to_the_ones_asked(
        http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert set(body["services"]) == {"story.author", "story.illustrator", "story.publisher",
                                     "story.submit", "story.query", "story.watch"}
    assert body["services"]["story.illustrator"]["workers"] == 2
    assert set(body["services"]["story.author"]) == {"workers", "idle", "busy", "queue"}
    narrowed = http.get("/health", params=[("service", "story.author"),
                                           ("service", "story.publisher")]).json()
    assert set(narrowed["services"]) == {"story.author", "story.publisher"}
    missing = http.get("/health", params={"service": "story.nobody"})
    assert missing.status_code == 503
    assert missing.json()["status"] == "degraded"
    assert missing.json()["services"]["story.nobody"]["workers"] == 0


def test_status_is_the_monitor_json(http: httpx.Client) -> None:
    body = http.get("/status").json()
    assert set(body) == {"broker", "up", "at", "error", "messages_per_s", "snapshot", "stories",
                         "agents"}
    assert body["up"] is True
    assert "story.submit" in body["snapshot"]["services"]


def test_openapi_schema_and_the_page_are_served(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    for path in ("/stories", "/stories/{corr}/events", "/health", "/status", "/send", "/token"):
        assert path in schema["paths"], path
    assert "plot" in json.dumps(schema["paths"]["/stories"]["post"]["requestBody"])
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


# --- a story from submission to book ------------------------------------------------------

def test_a_story_is_accepted_followed_and_read(http: httpx.Client) -> None:
    # Given a submitted story
    response = http.post("/stories", json=STORY)
    assert response.status_code == 202
    body = response.json()
    corr = body["id"]
    assert body["status"] == "accepted"
    assert response.headers["location"] == f"/stories/{corr}"
    assert body["links"]["events"] == f"/stories/{corr}/events"
    # Then its book is not there while it runs
    error_of(http.get(f"/stories/{corr}/book.pdf"), 404, "not_found")
    # When its events are followed to the end
    events = read_events(http, f"/stories/{corr}/events")
    names = [e["event"] for e in events]
    # Then one event per step, the outline first and the outcome last
    assert names[0] == "outline"
    assert names[-1] == "complete"
    assert sorted(names) == sorted(["outline", "chapter", "chapter", "picture", "picture",
                                    "picture", "publishing", "complete"])
    assert len({e["id"] for e in events}) == len(events)
    chapters = [e["data"] for e in events if e["event"] == "chapter"]
    assert [c["index"] for c in chapters] == [1, 2]
    assert "chapter 1" in chapters[0]["text"]
    pictures = sorted(e["data"]["index"] for e in events if e["event"] == "picture")
    assert pictures == [0, 1, 2]
    assert {"done", "total"} <= set(events[-2]["data"])
    links = events[-1]["data"]["links"]
    assert set(links) == {"pdf", "html", "epub"}
    # And every part can be read
    status = http.get(f"/stories/{corr}").json()
    assert status["status"] == "complete"
    assert status["steps"]["chapters_written"] == 2
    chapter = http.get(f"/stories/{corr}/chapters/2").json()
    assert chapter["index"] == 2
    assert "chapter 2" in chapter["text"]
    for event in events:
        if event["event"] == "picture":
            png = http.get(event["data"]["url"])
            assert png.headers["content-type"] == "image/png"
            assert png.content.startswith(b"\x89PNG")
    for fmt, kind in (("pdf", "application/pdf"), ("html", "text/html"),
                      ("epub", "application/epub+zip")):
        book = http.get(links[fmt])
        assert book.status_code == 200
        assert book.headers["content-type"].startswith(kind)
        assert book.headers["content-disposition"] == f'inline; filename="the-sleepy-mouse.{fmt}"'
    history = http.get(f"/stories/{corr}/history").json()["history"]
    assert {"sender", "receiver", "message_type", "time"} <= set(history[0])
    assert any(h["receiver"] == "publisher" for h in history)
    listed = http.get("/stories", params={"limit": 100}).json()["stories"]
    assert corr in [s["corr"] for s in listed]
    assert {"corr", "status", "title", "created", "updated", "plot"} <= set(listed[0])


def test_chapters_and_pictures_are_404_until_they_exist(http: httpx.Client) -> None:
    corr = submit(http)
    error_of(http.get(f"/stories/{corr}/chapters/2"), 404, "not_found")
    error_of(http.get(f"/stories/{corr}/chapters/0"), 404, "not_found")
    error_of(http.get(f"/stories/{corr}/pictures/9.png"), 404, "not_found")
    error_of(http.get(f"/stories/{corr}/book.doc"), 404, "not_found")
    read_events(http, f"/stories/{corr}/events")  # to its end
    assert http.get(f"/stories/{corr}/chapters/2").status_code == 200
    assert http.get(f"/stories/{corr}/pictures/0.png").status_code == 200


def test_cancelling_a_story_answers_its_new_status(http: httpx.Client) -> None:
    corr = submit(http)
    response = http.delete(f"/stories/{corr}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    events = read_events(http, f"/stories/{corr}/events")
    assert events[-1]["event"] == "failed"
    assert events[-1]["data"]["status"] == "cancelled"


def test_an_idempotency_key_makes_a_retried_post_the_same_story(http: httpx.Client) -> None:
    first = submit(http, key="order-17")
    again = submit(http, key="order-17")
    other = submit(http, key="order-18")
    plain = submit(http)
    assert first == again
    assert len({first, other, plain}) == 3


def test_send_is_the_original_envelope_over_post_stories(http: httpx.Client) -> None:
    response = http.post("/send", json={"sender": "app", "message_type": "request",
                                        "content": {"action": "create_story", **STORY}})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    assert http.get(f"/stories/{body['message_id']}").status_code == 200
    error_of(http.post("/send", json={"content": {"action": "dance"}}), 400, "bad_request")
    error_of(http.post("/send", json={"content": "no"}), 400, "bad_request")


# --- events: fan-out and resumption -------------------------------------------------------

def test_many_listeners_share_one_watch_and_see_the_same_events(
        http: httpx.Client, gateway: GatewayServer) -> None:
    corr = submit(http)
    first = read_events(http, f"/stories/{corr}/events")
    second = read_events(http, f"/stories/{corr}/events")
    assert [(e["id"], e["event"]) for e in first] == [(e["id"], e["event"]) for e in second]
    hub = gateway.app.state.gateway.hub
    assert corr in hub.finished
    assert corr not in hub.feeds


def test_last_event_id_resumes_with_nothing_lost_or_twice(http: httpx.Client,
                                                          mesh: SleepyMesh) -> None:
    corr = submit(http)
    whole = read_events(http, f"/stories/{corr}/events")
    steps = {(e["event"], e["data"].get("index")) for e in whole}
    # Given a client that saw the first three events, then lost the connection
    early = read_events(http, f"/stories/{corr}/events", limit=3)
    assert [e["id"] for e in early] == [e["id"] for e in whole[:3]]
    # When it reconnects with Last-Event-ID, to this gateway or to a new one (a restart)
    rest = read_events(http, f"/stories/{corr}/events",
                       headers={"Last-Event-ID": early[-1]["id"]})
    with GatewayServer(gateway_settings(mesh.settings), context=mesh.context) as restarted, \
            httpx.Client(base_url=restarted.url, timeout=WAIT) as fresh:
        after_restart = read_events(fresh, f"/stories/{corr}/events",
                                    headers={"Last-Event-ID": early[-1]["id"]})
        by_query = read_events(fresh, f"/stories/{corr}/events?last_event_id={early[-1]['id']}")
    # Then it gets exactly what it missed, with the same ids
    for resumed in (rest, after_restart, by_query):
        got = [(e["event"], e["data"].get("index")) for e in early + resumed]
        assert len(got) == len(set(got))
        assert set(got) == steps
        assert [e["id"] for e in resumed] == [e["id"] for e in whole[3:]]
    # And an id that is not ours starts from the beginning
    assert len(read_events(http, f"/stories/{corr}/events",
                           headers={"Last-Event-ID": "garbage"})) == len(whole)


def test_a_live_story_streams_its_chapters_before_it_completes(http: httpx.Client) -> None:
    corr = submit(http, {**STORY, "chapters": 3})
    seen = read_events(http, f"/stories/{corr}/events", limit=2)
    status = http.get(f"/stories/{corr}").json()["status"]
    assert seen[0]["event"] == "outline"
    assert status in ("accepted", "running")  # chapters 2 and 3 are still to be written
    assert read_events(http, f"/stories/{corr}/events")[-1]["event"] == "complete"


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", "bad_request"),
    (b"[1, 2]", "bad_request"),
    (json.dumps({"plot": ""}).encode(), "bad_request"),
    (json.dumps({"plot": "x", "colour": "red"}).encode(), "bad_request"),
    (json.dumps({"plot": "x", "chapters": "two"}).encode(), "bad_request"),
    (json.dumps({"plot": "x" * 5000}).encode(), "too_large"),
])
def test_bad_submissions_are_400_never_422(http: httpx.Client, body: bytes, code: str) -> None:
    response = http.post("/stories", content=body, headers={"content-type": "application/json"})
    error_of(response, 400, code)


def test_a_body_over_64_kib_is_413(http: httpx.Client) -> None:
    error_of(http.post("/stories", content=b"x" * (64 * 1024 + 1)), 413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(80):
            yield b"x" * 1024

    error_of(http.post("/stories", content=chunks()), 413, "too_large")


def test_unknown_stories_routes_methods_and_parameters(http: httpx.Client) -> None:
    for path in ("/stories/st-nope", "/stories/st-nope/history", "/stories/st-nope/events",
                 "/stories/st-nope/chapters/1", "/stories/st-nope/pictures/0.png",
                 "/stories/st-nope/book.pdf", "/nowhere"):
        error_of(http.get(path), 404, "not_found")
    error_of(http.delete("/stories/st-nope"), 404, "not_found")
    error_of(http.put("/stories"), 405, "method_not_allowed")
    error_of(http.get("/stories", params={"limit": "many"}), 400, "bad_request")
    error_of(http.get("/stories", params={"limit": 0}), 400, "bad_request")
    error_of(http.get("/stories/st-nope/chapters/one"), 400, "bad_request")


def test_submissions_past_the_rate_limit_are_429_with_retry_after(mesh: SleepyMesh) -> None:
    settings = gateway_settings(mesh.settings, submit_rate=0.2, submit_burst=2)
    with GatewayServer(settings, context=mesh.context) as server, \
            httpx.Client(base_url=server.url, timeout=WAIT) as client:
        submit(client)
        submit(client)
        response = client.post("/stories", json=STORY)
        error = error_of(response, 429, "busy")
        assert error["retryable"] is True
        assert error["retry_after"] > 0
        assert int(response.headers["retry-after"]) >= 1


def test_event_streams_past_the_cap_are_429(mesh: SleepyMesh) -> None:
    settings = gateway_settings(mesh.settings, max_streams=1)
    with GatewayServer(settings, context=mesh.context) as server, \
            httpx.Client(base_url=server.url, timeout=WAIT) as client:
        corr = submit(client, {**STORY, "chapters": 4})
        with client.stream("GET", f"/stories/{corr}/events") as held:
            assert held.status_code == 200
            refused = client.get(f"/stories/{corr}/events")
            error_of(refused, 429, "busy")
            assert "retry-after" in refused.headers
        gate = server.app.state.gateway.streams
        wait_for(lambda: gate.open == 0, what="the stream's slot given back")


def test_a_mesh_without_workers_is_503_and_without_a_broker_504() -> None:
    base = fast_settings(service_wait=0.3)
    broker = new_broker(base)
    broker.start()
    try:
        settings = gateway_settings(dataclasses.replace(base, broker=broker.endpoint))
        with GatewayServer(settings) as server, \
                httpx.Client(base_url=server.url, timeout=WAIT) as client:
            health = client.get("/health")
            assert health.status_code == 503
            assert health.json()["status"] == "degraded"
            error = error_of(client.post("/stories", json=STORY), 503, "no_such_service")
            assert "no author" in error["message"]
            assert error["retryable"] is True
            error_of(client.get("/stories"), 503, "no_such_service")
    finally:
        broker.stop()
        broker.context.term()
    # no broker at all: nothing answers within the gateway's wait
    nobody = gateway_settings(dataclasses.replace(base, broker="tcp://127.0.0.1:1"),
                              mesh_timeout=0.3)
    with GatewayServer(nobody) as server, \
            httpx.Client(base_url=server.url, timeout=WAIT) as client:
        error_of(client.get("/stories"), 504, "expired")
        down = client.get("/health")
        assert down.status_code == 503
        assert down.json()["status"] == "down"


@pytest.mark.parametrize(("error", "status", "code"), [
    (RequestFailed("bad_request", "x"), 400, "bad_request"),
    (RequestFailed("too_large", "x"), 400, "too_large"),
    (RequestFailed("forbidden", "x"), 403, "forbidden"),
    (RequestFailed("not_found", "x"), 404, "not_found"),
    (RequestFailed("busy", "x", retryable=True, retry_after=2.5), 429, "busy"),
    (RequestFailed("no_such_service", "x", retryable=True), 503, "no_such_service"),
    (RequestFailed("worker_lost", "x", retryable=True), 503, "worker_lost"),
    (RequestFailed("shutting_down", "x", retryable=True), 503, "shutting_down"),
    (RequestFailed("not_active", "x", retryable=True), 503, "not_active"),
    (RequestFailed("expired", "x"), 504, "expired"),
    (RequestTimeout("no reply"), 504, "expired"),
    (RequestFailed("model_error", "x", retryable=True), 500, "internal"),
    (RequestFailed("something_new", "x"), 500, "internal"),
])
def test_every_mesh_code_has_its_http_answer(error: Exception, status: int, code: str) -> None:
    answer = from_mesh(error)  # type: ignore[arg-type]
    assert (answer.status, answer.code) == (status, code)
    if code == "busy":
        assert answer.headers() == {"Retry-After": "3"}
        assert answer.retry_after == 2.5


def test_another_keys_story_reads_as_one_that_does_not_exist() -> None:
    hidden = from_mesh(RequestFailed("forbidden", "story st-1 belongs to another key"),
                       story="st-1")
    missing = from_mesh(RequestFailed("not_found", "no story st-1"), story="st-1")
    assert hidden.body() == missing.body()
    assert hidden.status == 404
    assert ApiError("unauthorized", "who?").status == 401


# --- keys ---------------------------------------------------------------------------------

def test_with_keys_everything_but_health_needs_one(keyed: GatewayServer,
                                                   keyfile: tuple[Path, dict[str, str]]) -> None:
    alice = keyfile[1]["alice"]
    with httpx.Client(base_url=keyed.url, timeout=WAIT) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 200  # the page asks for the key itself
        for method, path in (("GET", "/stories"), ("POST", "/stories"), ("GET", "/status"),
                             ("GET", "/token"), ("GET", "/stories/st-x"), ("POST", "/send")):
            error_of(client.request(method, path), 401, "unauthorized")
        error_of(client.get("/stories", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        assert client.get("/stories", headers={"X-API-Key": alice}).status_code == 200
        assert client.get("/stories",
                          headers={"Authorization": f"Bearer {alice}"}).status_code == 200


def test_a_key_sees_only_its_own_stories(keyed: GatewayServer,
                                         keyfile: tuple[Path, dict[str, str]]) -> None:
    secrets = keyfile[1]
    with httpx.Client(base_url=keyed.url, timeout=WAIT,
                      headers={"X-API-Key": secrets["alice"]}) as alice, \
            httpx.Client(base_url=keyed.url, timeout=WAIT,
                         headers={"X-API-Key": secrets["bob"]}) as bob:
        corr = submit(alice)
        events = read_events(alice, f"/stories/{corr}/events")
        assert events[-1]["event"] == "complete"
        assert alice.get(f"/stories/{corr}").json()["principal"] == "alice"
        for path in (f"/stories/{corr}", f"/stories/{corr}/history",
                     f"/stories/{corr}/events", f"/stories/{corr}/chapters/1",
                     f"/stories/{corr}/pictures/0.png", f"/stories/{corr}/book.pdf"):
            answer = error_of(bob.get(path), 404, "not_found")
            assert answer["message"] == f"no story {corr}"  # exactly as for no story at all
        error_of(bob.delete(f"/stories/{corr}"), 404, "not_found")
        assert corr in [s["corr"] for s in alice.get("/stories").json()["stories"]]
        assert corr not in [s["corr"] for s in bob.get("/stories").json()["stories"]]
        # the same Idempotency-Key of two keys is two stories
        assert submit(alice, key="k") != submit(bob, key="k")


def test_url_tokens_stand_in_for_the_key_on_gets_only(keyed: GatewayServer,
                                                      keyfile: tuple[Path, dict[str, str]]) -> None:
    with httpx.Client(base_url=keyed.url, timeout=WAIT) as anonymous, \
            httpx.Client(base_url=keyed.url, timeout=WAIT,
                         headers={"X-API-Key": keyfile[1]["alice"]}) as alice:
        issued = alice.get("/token").json()
        assert issued["owner"] == "alice"
        assert issued["expires_in"] > 0
        token = issued["token"]
        accepted = alice.post("/stories", json=STORY).json()
        corr = accepted["id"]
        assert accepted["links"]["events"].endswith("?token=" + accepted["links"]["events"]
                                                    .split("?token=")[1])
        events = read_events(anonymous, accepted["links"]["events"])
        picture = next(e for e in events if e["event"] == "picture")
        assert "token=" in picture["data"]["url"]
        assert anonymous.get(picture["data"]["url"]).status_code == 200
        assert anonymous.get(events[-1]["data"]["links"]["pdf"]).status_code == 200
        assert anonymous.get(f"/stories/{corr}?token={token}").status_code == 200
        error_of(anonymous.post(f"/stories?token={token}", json=STORY), 401, "unauthorized")
        error_of(anonymous.delete(f"/stories/{corr}?token={token}"), 401, "unauthorized")
        forged = token[:-1] + ("0" if token[-1] != "0" else "1")
        error_of(anonymous.get(f"/stories/{corr}?token={forged}"), 401, "unauthorized")


def test_tokens_expire_and_die_with_their_key(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "keys"
    add_key(path, "carol")
    ring = KeyRing(path, clock=lambda: now[0])
    issued = ring.issue("carol", 60)
    assert issued is not None
    text = ring.encode(issued)
    assert ring.verify(text) == issued
    now[0] += 61
    assert ring.verify(text) is None
    assert ring.issue("nobody", 60) is None


def test_keys_api_command_stores_only_the_hash_and_prints_the_secret_last(
        tmp_path: Path) -> None:
    path = tmp_path / "etc" / "api-keys"

    def keys_api(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "storymesh", "keys", "api", name,
                               "--file", str(path)], cwd=REPO, capture_output=True, text=True,
                              timeout=60, check=False)

    made = keys_api("dora")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert len(secret) >= 43  # 256 bits, URL-safe base64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert secret not in path.read_text()
    assert KeyRing(path).owner_of(secret) == "dora"
    again = keys_api("dora")
    assert again.returncode == 2
    assert "already has a key named 'dora'" in again.stderr


def test_an_open_address_without_keys_is_refused_unless_allowed(tmp_path: Path) -> None:
    open_settings = gateway_settings(fast_settings())
    open_settings = dataclasses.replace(open_settings, gateway=dataclasses.replace(
        open_settings.gateway, http="0.0.0.0:8080"))
    with pytest.raises(ConfigError, match="without API keys"):
        load_keys(open_settings)
    allowed = dataclasses.replace(open_settings, gateway=dataclasses.replace(
        open_settings.gateway, allow_anonymous=True))
    assert load_keys(allowed) is None
    result = subprocess.run([sys.executable, "-m", "storymesh", "gateway", "--http",
                             "0.0.0.0:0", "--config", "/dev/null"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--allow-anonymous" in result.stderr


def test_the_orchestrator_names_are_exported_lazily() -> None:
    import storymesh
    from storymesh.story.orchestrator import DistributedOrchestrator

    assert storymesh.DistributedOrchestrator is DistributedOrchestrator
    assert DistributedOrchestrator("tcp://127.0.0.1:5555").broker == "tcp://127.0.0.1:5555"
