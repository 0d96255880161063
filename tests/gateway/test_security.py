"""The gateway reviewed as an attacker would use it, against a real gateway in front of a real
in-process mesh: garbage in paths, tokens, headers and bodies is a 4xx answer (never a 500 or
a traceback), another key's story is indistinguishable from none, a cross-site page cannot
change stories, a book's file name cannot inject headers, and the keys file fails closed."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from storymesh.errors import ConfigError
from storymesh.gateway.keys import KeyRing, add_key
from storymesh.gateway.server import GatewayServer, load_keys
from testkit.gateway import error_of, gateway_settings
from testkit.mesh import fast_settings, wait_for
from testkit.sleepy import Costs, SleepyMesh

COSTS = Costs(outline=0.02, chapter=0.05, picture=0.02, publish=0.02)
STORY = {"plot": "A brave mouse looks for the moon", "chapters": 1}
WAIT = 30.0


def finish(client: httpx.Client, corr: str) -> list[str]:
    """Follow the story's events to its end; their names."""
    names = []
    with client.stream("GET", f"/stories/{corr}/events") as response:
        assert response.status_code == 200, response.read()
        names = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
    return names


@pytest.fixture(scope="module")
def mesh() -> Iterator[SleepyMesh]:
    with SleepyMesh(fast_settings(), COSTS) as running:
        yield running


@pytest.fixture
def alice(keyed: GatewayServer, keyfile: tuple[Path, dict[str, str]]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed.url, timeout=WAIT,
                      headers={"X-API-Key": keyfile[1]["alice"]}) as client:
        yield client


@pytest.fixture
def bob(keyed: GatewayServer, keyfile: tuple[Path, dict[str, str]]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed.url, timeout=WAIT,
                      headers={"X-API-Key": keyfile[1]["bob"]}) as client:
        yield client


@pytest.fixture(scope="module")
def alices_story(keyed: GatewayServer, keyfile: tuple[Path, dict[str, str]]) -> str:
    """A finished story of alice's."""
    with httpx.Client(base_url=keyed.url, timeout=WAIT,
                      headers={"X-API-Key": keyfile[1]["alice"]}) as client:
        response = client.post("/stories", json=STORY)
        assert response.status_code == 202, response.text
        corr = str(response.json()["id"])
        assert finish(client, corr)[-1] == "complete"
        return corr


# --- garbage is a 4xx, never a 500 --------------------------------------------------------

@pytest.mark.parametrize("n", ["\u00b2", "\u0663", "-1", "+1", "1e3", "9999999", " 1", "0x1"])
def test_a_path_or_query_number_that_is_not_plain_digits_is_400(
        alice: httpx.Client, alices_story: str, n: str) -> None:
    for path in (f"/stories/{alices_story}/chapters/{n}",
                 f"/stories/{alices_story}/pictures/{n}.png"):
        error_of(alice.get(path), 400, "bad_request")
    error_of(alice.get("/stories", params={"limit": n}), 400, "bad_request")


def test_an_unauthenticated_caller_learns_nothing_from_the_path(keyed: GatewayServer,
                                                                alices_story: str) -> None:
    with httpx.Client(base_url=keyed.url, timeout=WAIT) as nobody:
        for path in (f"/stories/{alices_story}/chapters/one", f"/stories/{alices_story}/book.doc",
                     f"/stories/{alices_story}/pictures/x.png"):
            error_of(nobody.get(path), 401, "unauthorized")


@pytest.mark.parametrize("token", [
    "alice.99999999999.\u00e9\u00e9",  # a non-ASCII signature once made compare_digest raise
    "alice." + "1" * 5000 + ".ab",  # past the int-from-string limit
    "alice.\u00b2.ab",  # a digit to str.isdigit, not to int()
    "alice..", "..", ".", "alice", "x" * 5000,
])
def test_a_garbage_token_is_401(keyed: GatewayServer, alices_story: str, token: str) -> None:
    with httpx.Client(base_url=keyed.url, timeout=WAIT) as nobody:
        for path in ("/stories", f"/stories/{alices_story}"):
            error_of(nobody.get(path, params={"token": token}), 401, "unauthorized")


def test_a_token_reads_only_its_own_keys_stories_and_mints_no_tokens(
        keyed: GatewayServer, bob: httpx.Client, alices_story: str) -> None:
    token = bob.get("/token").json()["token"]
    with httpx.Client(base_url=keyed.url, timeout=WAIT) as holder:
        for path in (f"/stories/{alices_story}", f"/stories/{alices_story}/events",
                     f"/stories/{alices_story}/book.pdf", f"/stories/{alices_story}/chapters/1",
                     f"/stories/{alices_story}/pictures/0.png"):
            error_of(holder.get(path, params={"token": token}), 404, "not_found")
        listed = holder.get("/stories", params={"token": token}).json()["stories"]
        assert alices_story not in [s["corr"] for s in listed]
        error_of(holder.get("/token", params={"token": token}), 401, "unauthorized")
        error_of(holder.post("/send", params={"token": token},
                             json={"content": {"action": "create_story", **STORY}}),
                 401, "unauthorized")


@pytest.mark.parametrize("last", [b"\xb2-1", ("1" * 5000 + "-1").encode(), b"3-zz",
                                  b"-1-1", b"1-", b"1-0x1", b"1-" + b"f" * 5000])
def test_a_garbage_last_event_id_replays_from_the_start(
        alice: httpx.Client, alices_story: str, last: bytes) -> None:
    whole = finish(alice, alices_story)
    with alice.stream("GET", f"/stories/{alices_story}/events",
                      headers={b"Last-Event-ID": last}) as response:
        assert response.status_code == 200, response.read()
        names = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
    assert names == whole
    query = alice.get(f"/stories/{alices_story}/events",
                      params={"last_event_id": last.decode("latin-1")})
    assert query.status_code == 200, query.text


@pytest.mark.parametrize("body", [
    b"[" * 10_000,  # deeper than the JSON decoder's recursion limit
    b'{"plot": "x", "seed": ' + b"1" * 5000 + b"}",  # past the int-from-string limit
    b'{"plot": "x", "seed": 1e999}',
    b"\xff\xfe{}",
    b'{"plot": NaN}',
])
def test_a_body_that_breaks_the_json_decoder_is_400(alice: httpx.Client, body: bytes) -> None:
    error_of(alice.post("/stories", content=body), 400, "bad_request")
    send = b'{"content": ' + body + b"}"
    error_of(alice.post("/send", content=send), 400, "bad_request")


def test_a_chunked_body_over_the_limit_is_413_on_send_too(alice: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"content": {"action": "create_story", "plot": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}}'

    error_of(alice.post("/send", content=chunks()), 413, "too_large")


# --- owners -------------------------------------------------------------------------------

def test_another_keys_story_answers_exactly_like_no_story(
        alice: httpx.Client, bob: httpx.Client, alices_story: str) -> None:
    missing = "st-0000000000000000"
    for suffix in ("", "/history", "/events", "/chapters/1", "/chapters/0", "/pictures/0.png",
                   "/pictures/7.png", "/book.pdf", "/book.html", "/book.epub"):
        hidden = bob.get(f"/stories/{alices_story}{suffix}")
        absent = bob.get(f"/stories/{missing}{suffix}")
        assert hidden.status_code == absent.status_code == 404, (suffix, hidden.text)
        assert hidden.text.replace(alices_story, "ID") == absent.text.replace(missing, "ID")
        assert alice.get(f"/stories/{alices_story}{suffix}").status_code in (200, 404)
    hidden = bob.delete(f"/stories/{alices_story}")
    absent = bob.delete(f"/stories/{missing}")
    assert hidden.status_code == absent.status_code == 404
    assert hidden.text.replace(alices_story, "ID") == absent.text.replace(missing, "ID")
    assert alice.get(f"/stories/{alices_story}").json()["status"] == "complete"
    history = bob.get("/stories", params={"limit": 1000}).json()["stories"]
    assert alices_story not in json.dumps(history)


def test_an_idempotency_key_of_a_key_named_none_is_not_the_anonymous_ones(
        keyed: GatewayServer, gateway: GatewayServer,
        keyfile: tuple[Path, dict[str, str]]) -> None:
    # Given one mesh behind a keyed gateway and an anonymous one, and a key named "None"
    with httpx.Client(base_url=gateway.url, timeout=WAIT) as open_client, \
            httpx.Client(base_url=keyed.url, timeout=WAIT,
                         headers={"X-API-Key": keyfile[1]["None"]}) as none_key:
        # When both retry a submission under the same Idempotency-Key
        first = open_client.post("/stories", json=STORY, headers={"Idempotency-Key": "k-1"})
        second = none_key.post("/stories", json=STORY, headers={"Idempotency-Key": "k-1"})
        # Then they are two stories, and the key named None cannot read the anonymous one
        assert first.status_code == second.status_code == 202, (first.text, second.text)
        assert first.json()["id"] != second.json()["id"]
        error_of(none_key.get(f"/stories/{first.json()['id']}"), 404, "not_found")


def test_the_rate_limit_is_per_key(mesh: SleepyMesh, keyfile: tuple[Path, dict[str, str]]
                                   ) -> None:
    settings = gateway_settings(mesh.settings, api_keys=str(keyfile[0]), submit_rate=0.01,
                                submit_burst=1)
    with GatewayServer(settings, context=mesh.context, keys=KeyRing(keyfile[0])) as server, \
            httpx.Client(base_url=server.url, timeout=WAIT) as client:
        alice, bob = ({"X-API-Key": keyfile[1][n]} for n in ("alice", "bob"))
        assert client.post("/stories", json=STORY, headers=alice).status_code == 202
        refused = client.post("/stories", json=STORY, headers=alice)
        error_of(refused, 429, "busy")
        assert int(refused.headers["retry-after"]) >= 1
        assert client.post("/stories", json=STORY, headers=bob).status_code == 202


# --- browsers -----------------------------------------------------------------------------

def test_a_cross_site_page_cannot_submit_or_cancel(gateway: GatewayServer) -> None:
    # Given a gateway without keys on loopback, which a page of any site could post to
    with httpx.Client(base_url=gateway.url, timeout=WAIT) as client:
        corr = client.post("/stories", json=STORY).json()["id"]
        for site in ("cross-site", "same-site"):
            forged = {"Sec-Fetch-Site": site, "Content-Type": "text/plain"}
            # When a browser says the request comes from another site's page
            error_of(client.post("/stories", content=json.dumps(STORY), headers=forged),
                     403, "forbidden")
            error_of(client.post("/send", headers=forged, content=json.dumps(
                {"content": {"action": "create_story", **STORY}})), 403, "forbidden")
            error_of(client.delete(f"/stories/{corr}", headers=forged), 403, "forbidden")
            # Then reading (which the browser keeps from that page anyway) still works
            assert client.get(f"/stories/{corr}", headers=forged).status_code == 200
        # And the page's own requests, and curl's, are served
        own = client.post("/stories", json=STORY, headers={"Sec-Fetch-Site": "same-origin"})
        assert own.status_code == 202, own.text
        assert client.post("/stories", json=STORY).status_code == 202


def test_a_title_cannot_inject_headers_and_names_the_file_in_its_own_script(
        alice: httpx.Client) -> None:
    title = 'Мышь "и"\r\nX-Evil: 1\r\n луна/../é'
    response = alice.post("/stories", json={**STORY, "title": title})
    assert response.status_code == 202, response.text
    corr = response.json()["id"]
    assert finish(alice, corr)[-1] == "complete"
    book = alice.get(f"/stories/{corr}/book.pdf")
    assert book.status_code == 200
    assert "x-evil" not in book.headers
    header = book.headers["content-disposition"]
    assert re.fullmatch(r'inline; filename="[a-z0-9-]+\.pdf"; filename\*=UTF-8\'\'[A-Za-z0-9%._-]+',
                        header), header
    assert unquote(header.split("''", 1)[1]) == "мышь-и-x-evil-1-луна-é.pdf"
    assert book.headers["x-content-type-options"] == "nosniff"
    assert book.headers["referrer-policy"] == "no-referrer"
    assert alice.get(f"/stories/{corr}/book.html").headers["content-security-policy"] == "sandbox"
    picture = alice.get(f"/stories/{corr}/pictures/0.png")
    assert picture.headers["x-content-type-options"] == "nosniff"


# --- the keys file ------------------------------------------------------------------------

def test_the_keys_file_is_reread_and_fails_closed_when_it_cannot_be_read(
        mesh: SleepyMesh, tmp_path: Path) -> None:
    path = tmp_path / "api-keys"
    carol, dave = add_key(path, "carol"), add_key(path, "dave")
    settings = gateway_settings(mesh.settings, api_keys=str(path))
    with GatewayServer(settings, context=mesh.context, keys=KeyRing(path)) as server, \
            httpx.Client(base_url=server.url, timeout=WAIT) as client:
        as_dave = {"X-API-Key": dave}
        token = client.get("/token", headers=as_dave).json()["token"]
        assert client.get("/stories", params={"token": token}).status_code == 200
        # When dave's line is removed, his key and his tokens stop working
        path.write_text("".join(line + "\n" for line in path.read_text().splitlines()
                                if not line.startswith("dave:")))
        wait_for(lambda: client.get("/stories", headers=as_dave).status_code == 401,
                 what="dave's key refused")
        error_of(client.get("/stories", params={"token": token}), 401, "unauthorized")
        assert client.get("/stories", headers={"X-API-Key": carol}).status_code == 200
        # When the file is gone, nobody is let in, and the answer names no path
        saved = path.read_text()
        path.unlink()
        wait_for(lambda: client.get("/stories", headers={"X-API-Key": carol}).status_code
                 == 500, what="the gateway noticing the keys file is gone")
        error = error_of(client.get("/stories", headers={"X-API-Key": carol}), 500, "internal")
        assert str(tmp_path) not in error["message"]
        assert "keys" in error["message"]
        # And when it is back, so is carol
        path.write_text(saved)
        wait_for(lambda: client.get("/stories", headers={"X-API-Key": carol}).status_code
                 == 200, what="the keys file read again")


def test_a_keys_file_rewritten_within_one_mtime_tick_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "api-keys"
    secret = add_key(path, "erin")
    ring = KeyRing(path)
    assert ring.owner_of(secret) == "erin"
    before = path.stat()
    path.write_text("# nobody\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    ring.reload()
    assert ring.owner_of(secret) is None


def test_a_keys_file_saved_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "api-keys"
    secret = add_key(path, "fay")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert KeyRing(path).owner_of(secret) == "fay"


@pytest.mark.parametrize(("http", "refused"), [
    ("0.0.0.0:8080", True), ("[::]:8080", True), ("192.168.1.5:8080", True),
    ("example.com:8080", True),
    ("127.0.0.1:8080", False), ("localhost:8080", False), ("[::1]:8080", False),
    ("8080", False),
])
def test_only_loopback_is_served_without_keys(http: str, refused: bool) -> None:
    base = fast_settings()
    settings = dataclasses.replace(base, gateway=dataclasses.replace(base.gateway, http=http))
    if refused:
        with pytest.raises(ConfigError, match="--allow-anonymous"):
            load_keys(settings)
    else:
        assert load_keys(settings) is None
