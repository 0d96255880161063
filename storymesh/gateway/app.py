"""The gateway's HTTP application: routes, keys, limits, error answers and the static page.

`build_app(settings, keys=..., context=...)` returns a FastAPI app; `server` runs it on
uvicorn. Every error is `{"error": {"code", "message", "retryable", "retry_after"}}`
(`errors`), never FastAPI's 422. The paths and keys are the contract of docs/http.md.

Who may do what: without keys everyone is anonymous and sees every story. With keys
(`KeyRing`) every route but `GET /health`, the page and the schema needs a key
(`X-API-Key` or `Authorization: Bearer`), or on a GET a token from `GET /token` in `?token=`;
the key's name owns the stories it submits, and another key's story is answered 404.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import zmq
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storymesh.core.envelope import new_id
from storymesh.errors import AgentError, ConfigError, RequestFailed, RequestTimeout
from storymesh.gateway import feeds
from storymesh.gateway.errors import ApiError, from_mesh, not_found
from storymesh.gateway.keys import KeyRing
from storymesh.gateway.limits import RateLimiter, StreamGate
from storymesh.gateway.mesh import Mesh, WatchPump
from storymesh.ops.health import DOWN, HEALTHY, STORY_SERVICES, health_report
from storymesh.settings import Settings
from storymesh.story.api import slug
from storymesh.story.spec import StorySpec

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
NEEDED_TO_SUBMIT = {"story.submit": "a story service", "story.author": "an author",
                    "story.illustrator": "an illustrator", "story.publisher": "a publisher"}
BOOK_TYPES = {"pdf": "application/pdf", "html": "text/html; charset=utf-8",
              "epub": "application/epub+zip"}
HEALTH_TIMEOUT = 2.0  # seconds: a load balancer's check must not hang
SERVICES_TTL = 1.0  # seconds a "which services have workers" answer is reused for submissions
STREAMS_RETRY = 5.0  # seconds a client is asked to wait when every stream slot is taken
OWNERS_KEPT = 10_000  # story owners remembered (the story service knows them all anyway)
KEYS_RECHECK = 1.0  # seconds between looks at the keys file for added or removed keys
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Answers with a story's contents: never sniffed as another type, and the URL (which may
# carry a token) is not sent on as a Referer from the book's own links.
CONTENT_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class StoryRequest(BaseModel):
    """The story request keys (for the OpenAPI schema; the story service checks values)."""

    model_config = ConfigDict(extra="forbid")
    plot: str
    themes: list[str] = []
    target_age: str | None = None
    length: str | None = None
    chapters: int | None = None
    art_style: str | None = None
    formats: list[str] | None = None
    seed: int | None = None
    title: str | None = None
    language: str | None = None


class SendEnvelope(BaseModel):
    """The original design's message envelope (`POST /send`)."""

    sender: str | None = None
    message_type: str | None = None
    content: dict[str, Any]


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the key's name (None without keys) and the address it came from."""

    owner: str | None
    address: str


class BodyTooLarge(Exception):
    """The request body passed `max_body_bytes`."""


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes is refused (413) before it is all read."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge()
            return message

        await self.app(scope, counted, send)


def _too_large(limit: int) -> JSONResponse:
    return _error_response(ApiError("too_large", f"the request body is over {limit} bytes",
                                    status=413))


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


class _Stream(EventSourceResponse):
    """An event stream that gives its slot back however it ends."""

    def __init__(self, content: AsyncIterator[ServerSentEvent], on_close: Callable[[], None],
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


class Gateway:
    """The state behind the routes: keys, limits, the mesh, the feeds."""

    def __init__(self, settings: Settings, keys: KeyRing | None,
                 context: zmq.Context[Any] | None, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.config = settings.gateway
        self.keys = keys
        self.clock = clock
        self.mesh = Mesh(settings, context=context)
        self.limiter = RateLimiter(self.config.submit_rate, self.config.submit_burst)
        self.streams = StreamGate(self.config.max_streams)
        self.hub = feeds.FeedHub(self._open_watch)
        self.pump: WatchPump | None = None
        self.owners: OrderedDict[str, str | None] = OrderedDict()
        self._services: tuple[float, dict[str, bool | None]] | None = None
        self._keys_checked = float("-inf")
        self._keys_broken = False

    # -- lifecycle --

    def start(self) -> None:
        import asyncio

        self.pump = WatchPump(self.settings, self.mesh.context, asyncio.get_running_loop(),
                              self.hub.deliver)
        self.pump.start()

    def close(self) -> None:
        if self.pump is not None:
            self.pump.close()
        self.mesh.close()

    def _open_watch(self, corr: str, owner: str | None) -> None:
        assert self.pump is not None  # the app's lifespan started it
        self.pump.watch(corr, owner)

    # -- who is asking --

    def caller(self, request: Request, *, token_ok: bool = False) -> Caller:
        """The caller, or 401: a key in a header, or on a GET a token in `?token=`."""
        address = request.client.host if request.client else "unknown"
        if request.method not in SAFE_METHODS and request.headers.get(
                "sec-fetch-site") in ("cross-site", "same-site"):
            # Another site's page in the user's browser (CSRF): a gateway without keys on
            # loopback would take its form posts as the user's own.
            raise ApiError("forbidden", "a page of another site may not change stories here")
        if self.keys is None:
            return Caller(None, address)
        self._reload_keys()
        secret = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if secret is None and auth[:7].lower() == "bearer ":
            secret = auth[7:].strip()
        if secret:
            owner = self.keys.owner_of(secret)
            if owner is not None:
                return Caller(owner, address)
            raise ApiError("unauthorized", "unknown API key")
        token = request.query_params.get("token")
        if token and token_ok and request.method in ("GET", "HEAD"):
            verified = self.keys.verify(token)
            if verified is not None:
                return Caller(verified.name, address)
            raise ApiError("unauthorized", "the token is not valid (expired?); get a new one "
                                           "from GET /token")
        raise ApiError("unauthorized", "an API key is required: send X-API-Key: SECRET or "
                                       "Authorization: Bearer SECRET")

    def _reload_keys(self) -> None:
        """Look at the keys file at most every KEYS_RECHECK s; fail closed if it is bad."""
        assert self.keys is not None
        now = self.clock()
        if now - self._keys_checked < KEYS_RECHECK:
            return
        self._keys_checked = now
        try:
            self.keys.reload()
        except ConfigError as exc:
            self._keys_checked = float("-inf")  # look again on the next request
            if not self._keys_broken:
                log.error("%s; every request needing a key is refused until it is fixed", exc)
            self._keys_broken = True
            raise ApiError("internal", "the gateway cannot read its API keys file; tell "
                                       "its operator") from None
        if self._keys_broken:
            log.warning("API keys file %s can be read again", self.keys.path)
        self._keys_broken = False

    def token_for(self, owner: str | None) -> str | None:
        if self.keys is None or owner is None:
            return None
        token = self.keys.issue(owner, self.config.token_ttl)
        return self.keys.encode(token) if token is not None else None

    # -- stories and their owners --

    async def status(self, corr: str, caller: Caller) -> dict[str, Any]:
        """The story's status, or 404 when it does not exist or is another key's."""
        try:
            status = await self.mesh.query("status", caller.owner, corr=corr)
        except (RequestFailed, RequestTimeout) as exc:
            raise from_mesh(exc, story=corr) from None
        self._remember(corr, status.get("principal"))
        if caller.owner is not None and status.get("principal") != caller.owner:
            raise not_found(corr)
        return status

    async def check_owner(self, corr: str, caller: Caller) -> None:
        if caller.owner is None:
            return
        if corr in self.owners:
            if self.owners[corr] != caller.owner:
                raise not_found(corr)
            return
        await self.status(corr, caller)

    def _remember(self, corr: str, owner: str | None) -> None:
        self.owners[corr] = owner
        self.owners.move_to_end(corr)
        while len(self.owners) > OWNERS_KEPT:
            self.owners.popitem(last=False)

    async def query(self, op: str, corr: str, caller: Caller, **fields: Any) -> dict[str, Any]:
        """A story op for an owner-checked story; mesh errors as answers."""
        await self.check_owner(corr, caller)
        try:
            return await self.mesh.query(op, caller.owner, corr=corr, **fields)
        except (RequestFailed, RequestTimeout) as exc:
            raise from_mesh(exc, story=corr) from None

    # -- submitting --

    def rate_limit(self, caller: Caller) -> None:
        wait = self.limiter.take(caller.owner or caller.address, self.clock())
        if wait > 0:
            raise ApiError("busy", f"too many stories submitted; try again in {wait:.1f} s",
                           retry_after=wait)

    async def check_services(self) -> None:
        """503 at once when nobody could write the story (no author running, say)."""
        now = self.clock()
        if self._services is None or now - self._services[0] > SERVICES_TTL:
            found = await self.mesh.available(tuple(NEEDED_TO_SUBMIT), HEALTH_TIMEOUT)
            self._services = (now, found)
        found = self._services[1]
        if any(v is None for v in found.values()):
            self._services = None
            raise ApiError("no_such_service", f"the mesh does not answer (broker "
                                              f"{self.settings.broker})")
        missing = [NEEDED_TO_SUBMIT[s] for s, ok in found.items() if not ok]
        if missing:
            self._services = None
            running = " and ".join(f"no {what.split(' ', 1)[1]}" for what in missing)
            raise ApiError("no_such_service", f"{running[0].upper()}{running[1:]} is running, "
                                              "so no story can be written now",
                           retry_after=5.0)

    async def submit(self, request: Request, caller: Caller, body: dict[str, Any]) -> str:
        self.rate_limit(caller)
        try:
            StorySpec.parse(body)  # the story service's own checks, before any round trip
        except AgentError as exc:
            raise from_mesh(exc) from None
        await self.check_services()
        key = request.headers.get("idempotency-key")
        rid = None
        if key is not None:
            if not 1 <= len(key) <= 200:
                raise ApiError("bad_request", "Idempotency-Key must be 1-200 characters")
            # the same key of the same owner is the same submission, so the same story;
            # anonymous is "", which no key's name can be (a key may be named "None")
            scoped = f"{caller.owner or ''}\x00{key}".encode()
            rid = "http-" + hashlib.sha256(scoped).hexdigest()[:32]
        try:
            accepted = await self.mesh.call("story.submit", body, owner=caller.owner,
                                            rid=rid or new_id())
        except (RequestFailed, RequestTimeout) as exc:
            raise from_mesh(exc) from None
        corr = str(accepted["corr"])
        self._remember(corr, caller.owner)
        return corr


def disposition(title: str, fmt: str) -> str:
    """`inline` with the title as the file name: an ASCII slug in `filename` (no quote, no
    line break can get into the header), and for a title in another script the title's
    words in RFC 6266 `filename*` too, which browsers prefer."""
    header = f'inline; filename="{slug(title)}.{fmt}"'
    if title.isascii():
        return header
    words = re.findall(r"\w+", title)  # letters of any script; quotes, slashes, breaks go
    stem = "-".join(words).lower()[:60] or "story"
    return f"{header}; filename*=UTF-8''{quote(f'{stem}.{fmt}', safe='')}"


def links(corr: str, token: str | None) -> dict[str, str]:
    """Where a story's parts are; with keys, the GET links carry a token."""
    base = f"/stories/{corr}"
    paths = {"self": base, "events": f"{base}/events", "history": f"{base}/history",
             "chapter": f"{base}/chapters/{{n}}", "picture": f"{base}/pictures/{{n}}.png",
             **{fmt: f"{base}/book.{fmt}" for fmt in BOOK_TYPES}}
    return {name: feeds.with_token(path, token) for name, path in paths.items()}


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError as exc:  # not JSON, not UTF-8, or a number of thousands of digits
        raise ApiError("bad_request", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError("bad_request", "the body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError("bad_request", "the body must be a JSON object")
    return body


def _number(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 6:  # "²" is a digit to str
        raise ApiError("bad_request", f"{what} must be a whole number, not {text[:20]!r}")
    return int(text)


def build_app(settings: Settings, *, keys: KeyRing | None = None,
              context: zmq.Context[Any] | None = None,
              clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """The gateway app for `settings` (its `[gateway]` table), in front of `settings.broker`."""
    gw = Gateway(settings, keys, context, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gw.start()
        try:
            yield
        finally:
            gw.close()

    app = FastAPI(title="storymesh gateway", version="1",
                  description="The HTTP face of a storymesh mesh (docs/http.md).",
                  lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.gateway = gw
    _install_errors(app, settings.gateway.max_body_bytes)
    _story_routes(app, gw)
    _mesh_routes(app, gw)
    _page_routes(app)
    app.add_middleware(BodyLimit, limit=settings.gateway.max_body_bytes)
    return app


def _install_errors(app: FastAPI, limit: int) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error_response(exc)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                             for e in exc.errors())
        return _error_response(ApiError("bad_request", problems or "invalid request"))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
        return _error_response(ApiError(code, str(exc.detail), status=exc.status_code))

    async def too_large(request: Request, exc: Exception) -> Response:
        return _too_large(limit)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error_response(ApiError("internal", "an unexpected error in the gateway"))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_exception_handler(Exception, unexpected)


def _story_routes(app: FastAPI, gw: Gateway) -> None:
    @app.post("/stories", status_code=202, openapi_extra=_body_schema(StoryRequest),
              summary="Submit a story (202 with its id and links)")
    async def submit_story(request: Request) -> JSONResponse:
        caller = gw.caller(request)
        corr = await gw.submit(request, caller, await _json_object(request))
        return JSONResponse({"id": corr, "status": "accepted",
                             "links": links(corr, gw.token_for(caller.owner))},
                            status_code=202, headers={"Location": f"/stories/{corr}"})

    @app.post("/send", status_code=202, openapi_extra=_body_schema(SendEnvelope),
              summary="The original design's envelope: content.action = create_story")
    async def send(request: Request) -> JSONResponse:
        caller = gw.caller(request)
        envelope = await _json_object(request)
        content = envelope.get("content")
        if not isinstance(content, dict):
            raise ApiError("bad_request", "'content' must be a JSON object")
        story = dict(content)
        action = story.pop("action", None)
        if action != "create_story":
            raise ApiError("bad_request", f"unknown action {action!r}; the gateway knows "
                                          "'create_story'")
        corr = await gw.submit(request, caller, story)
        return JSONResponse({"status": "accepted", "message_id": corr}, status_code=202)

    @app.get("/stories", summary="Recent stories (the keys of `storymesh list`)")
    async def list_stories(request: Request, limit: str = "50") -> dict[str, Any]:
        caller = gw.caller(request, token_ok=True)
        count = _number(limit, "limit")
        if not 1 <= count <= 1000:
            raise ApiError("bad_request", "limit must be in 1..1000")
        fields: dict[str, Any] = {"limit": count}
        if caller.owner is not None:
            fields["owner"] = caller.owner
        try:
            listed = await gw.mesh.query("list", caller.owner, **fields)
        except (RequestFailed, RequestTimeout) as exc:
            raise from_mesh(exc) from None
        return {"stories": listed.get("stories", [])}

    @app.get("/stories/{corr}", summary="A story's status")
    async def story_status(request: Request, corr: str) -> dict[str, Any]:
        return await gw.status(corr, gw.caller(request, token_ok=True))

    @app.get("/stories/{corr}/history", summary="A story's messages")
    async def story_history(request: Request, corr: str) -> dict[str, Any]:
        found = await gw.query("history", corr, gw.caller(request, token_ok=True))
        return {"history": found.get("history", [])}

    @app.delete("/stories/{corr}", summary="Cancel a story; its new status")
    async def cancel_story(request: Request, corr: str) -> dict[str, Any]:
        caller = gw.caller(request)
        await gw.query("cancel", corr, caller)
        return await gw.status(corr, caller)

    @app.get("/stories/{corr}/chapters/{n}", summary="A chapter's text (1..N), once written")
    async def chapter(request: Request, corr: str, n: str) -> dict[str, Any]:
        caller = gw.caller(request, token_ok=True)  # 401 before anything about the path
        number = _number(n, "the chapter number")
        if number < 1:
            await gw.check_owner(corr, caller)
            raise ApiError("not_found", "chapters are numbered from 1")
        found = await gw.query("chapter", corr, caller, index=number - 1)
        return {"id": corr, "index": number, "title": found.get("title"),
                "text": found.get("text", "")}

    @app.get("/stories/{corr}/pictures/{n}.png", summary="A picture (0 = the cover), once painted",
             response_class=Response)
    async def picture(request: Request, corr: str, n: str) -> Response:
        caller = gw.caller(request, token_ok=True)
        number = _number(n, "the picture number")
        found = await gw.query("picture", corr, caller, index=number - 1 if number else -1)
        return Response(found.get("png", b""), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=86400", **CONTENT_HEADERS})

    @app.get("/stories/{corr}/book.{fmt}", summary="The book (pdf, html, epub), once complete",
             response_class=Response)
    async def book(request: Request, corr: str, fmt: str) -> Response:
        caller = gw.caller(request, token_ok=True)
        if fmt not in BOOK_TYPES:
            raise ApiError("not_found", f"no book format {fmt!r}; choose pdf, html or epub")
        found = await gw.query("fetch", corr, caller, format=fmt)
        data = (found.get("publications") or {}).get(fmt)
        if found.get("status") != "complete" or not isinstance(data, bytes):
            raise ApiError("not_found", f"story {corr} has no {fmt} book (yet)")
        headers = {"Content-Disposition": disposition(found.get("title") or corr, fmt),
                   **CONTENT_HEADERS}
        if fmt == "html":  # the book's own page: shown, never allowed to run anything here
            headers["Content-Security-Policy"] = "sandbox"
        return Response(data, media_type=BOOK_TYPES[fmt], headers=headers)

    @app.get("/stories/{corr}/events", summary="Server-Sent Events, one per step",
             response_class=Response)
    async def events(request: Request, corr: str, last_event_id: str | None = None) -> Response:
        caller = gw.caller(request, token_ok=True)
        await gw.check_owner(corr, caller)
        if corr not in gw.owners:  # anonymous: still 404 for a story that does not exist
            await gw.status(corr, caller)
        have = feeds.parse_event_id(request.headers.get("last-event-id") or last_event_id)
        if not gw.streams.enter():
            raise ApiError("busy", f"{gw.streams.limit} event streams are open; try again soon",
                           retry_after=STREAMS_RETRY)
        feed = gw.hub.feed(corr, caller.owner)
        token = gw.token_for(caller.owner)

        async def stream() -> AsyncIterator[ServerSentEvent]:
            async for event, event_id in feed.follow(have):
                yield ServerSentEvent(data=feeds.sse_data(event, token), event=event.name,
                                      id=event_id)

        return _Stream(stream(), gw.streams.leave, ping=gw.config.ping_interval,
                       headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _mesh_routes(app: FastAPI, gw: Gateway) -> None:
    @app.get("/health", summary="200 when every story service has a worker, else 503")
    async def health(request: Request) -> JSONResponse:
        names = request.query_params.getlist("service") or list(STORY_SERVICES)
        try:
            snap = await gw.mesh.call("mmi.storymesh.snapshot", {}, timeout=HEALTH_TIMEOUT)
        except RequestTimeout:
            # every service asked for, with no workers: the shape of the healthy answer
            return JSONResponse({"status": DOWN, "services": health_report({}, names).services,
                                 "error": f"broker {gw.settings.broker} does not answer"},
                                status_code=503)
        except RequestFailed:  # keys on and not an admin key: ask MMI which services serve
            found = await gw.mesh.available(tuple(names), HEALTH_TIMEOUT)
            snap = {"services": {n: {"workers": int(bool(ok))} for n, ok in found.items()}}
        report = health_report(snap, names)
        return JSONResponse(report.as_json(), status_code=200 if report.status == HEALTHY else 503)

    @app.get("/status", summary="The broker snapshot, as `storymesh monitor --once --json`")
    async def status(request: Request) -> dict[str, Any]:
        gw.caller(request, token_ok=True)
        from storymesh.ops.monitor import Poller

        def poll() -> dict[str, Any]:
            poller = Poller(gw.settings, timeout=HEALTH_TIMEOUT, context=gw.mesh.context)
            try:
                return poller.poll().as_json()
            finally:
                poller.close()

        observed: dict[str, Any] = await gw.mesh.run(poll)
        return observed

    @app.get("/token", summary="A short-lived token for URLs (EventSource, <img>, links)")
    async def token(request: Request) -> dict[str, Any]:
        caller = gw.caller(request)
        issued = gw.token_for(caller.owner)
        return {"token": issued, "owner": caller.owner,
                "expires_in": gw.config.token_ttl if issued else None}


def _page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = STATIC / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html; charset=utf-8")
        return HTMLResponse("<!doctype html><title>storymesh</title><p>The storymesh gateway. "
                            "The API is described at <a href=/docs>/docs</a>.</p>")

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

