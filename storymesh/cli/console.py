"""What the story commands show a person: live progress bars, tables, written files."""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from storymesh.core import schema
from storymesh.errors import RequestFailed, RequestTimeout
from storymesh.settings import Settings
from storymesh.story.api import StoryClient, write_publications

T = TypeVar("T")

STATUS_STYLE = {"complete": "green", "failed": "red", "cancelled": "yellow",
                "running": "cyan", "accepted": "blue"}


@contextlib.contextmanager
def story_client(settings: Settings, *, local: bool, timeout: float | None = None,
                 illustrators: int = 1) -> Iterator[StoryClient]:
    """A StoryClient on the configured broker, or on a whole mesh in this process."""
    if not local:
        with StoryClient(settings.broker, settings=settings.peer_section(),
                         timeout=timeout) as client:
            yield client
        return
    from storymesh.story.local import LocalMesh
    with LocalMesh(settings, illustrators=illustrators) as mesh, \
            StoryClient(mesh.endpoint, settings=mesh.settings.peer_section(), context=mesh.context,
                        timeout=timeout) as client:
        yield client


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def follow(client: StoryClient, corr: str, console: Console) -> dict[str, Any]:
    """Live progress bars for one story until it ends; returns the outcome."""
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bars:
        overall = bars.add_task("[bold]book", total=None)
        chapters = bars.add_task("chapters written", total=None)
        pictures = bars.add_task("pictures painted", total=None)
        outcome: dict[str, Any] = {}
        for event in client.events(corr):
            if event["final"]:
                outcome = event
                break
            n = event.get("chapters") or None
            if event.get("title"):
                bars.update(overall, description=f"[bold]{event['title'][:22]}")
            bars.update(overall, total=event.get("total"), completed=event.get("done", 0))
            if n:
                bars.update(chapters, total=n)
                bars.update(pictures, total=n + 1)
            if "chapters_written" in event:  # totals so far: a repeated event changes nothing
                bars.update(chapters, completed=event["chapters_written"])
                bars.update(pictures, completed=event["pictures_painted"])
        if outcome.get("status") == "complete":
            bars.update(overall, completed=bars.tasks[overall].total or 1)
    return outcome


WAIT_PROBE = 2.0   # seconds one `mmi.service` probe may take while waiting
WAIT_PAUSE = 0.5   # seconds between probes that the broker answered
QUERY_PROBE = 5.0  # seconds the query commands give their one probe


def _reachable(client: StoryClient, broker: str, wait: float, console: Console,
               service: str = "story.submit",
               clock: Callable[[], float] = time.monotonic) -> tuple[int, str] | None:
    """None once a story service answers behind `broker`; else, after `wait` seconds of
    asking (so `storymesh story` right after `storymesh up` or `systemctl start` still
    makes the book), (exit code, why). Says once what it is waiting for."""
    deadline = clock() + wait
    said: set[str] = set()
    while True:
        left = deadline - clock()
        # wait 0 (the query commands): one probe, given a few seconds as before
        probe = QUERY_PROBE if wait <= 0 else max(0.1, min(WAIT_PROBE, left))
        found = client.client.service_available(service, timeout=probe)
        if found:
            return None
        missing = "the broker" if found is None else "the story service"
        if wait > 0 and missing not in said:
            said.add(missing)
            console.print(f"waiting for {missing} at {broker} (up to {wait:g} s)")
        if clock() >= deadline:
            break
        if found is not None:  # the broker answered at once: do not ask it in a busy loop
            time.sleep(min(WAIT_PAUSE, max(0.0, deadline - clock())))
    if found is None:
        return schema.EXIT_DOWN, (f"no broker answers at {broker}; is `storymesh up` "
                                  "(or `storymesh broker`) running?")
    return schema.exit_code_for("no_such_service"), (
        f"the broker at {broker} has no story service; start `storymesh agent story` "
        "(or `storymesh up`)")


def run_story(settings: Settings, request: dict[str, Any], *, out: Path, local: bool,
              detach: bool, timeout: float, illustrators: int = 1) -> int:
    """`storymesh story`: submit, follow with progress bars, write the files."""
    console = Console(stderr=False)
    try:
        with story_client(settings, local=local, timeout=timeout,
                          illustrators=illustrators) as client:
            if not local:
                problem = _reachable(client, settings.broker, settings.story_wait, console)
                if problem is not None:
                    console.print(f"[red]cannot start[/red]: {problem[1]} "
                                  "Or make the book in this process with --local.")
                    return problem[0]
            corr = client.submit_request(request)
            if detach:
                console.print(corr)
                return schema.EXIT_OK
            console.print(f"story [bold]{corr}[/bold] accepted")
            outcome = follow(client, corr, console)
    except RequestFailed as exc:
        # escape: a message may hold brackets ("[author]") that rich would read as markup
        console.print(f"[red]refused[/red] {exc.code}: {escape(exc.message)}")
        return schema.exit_code_for(exc.code)
    except RequestTimeout as exc:
        console.print(f"[red]timeout[/red] {exc}; the story goes on: "
                      f"`storymesh fetch {locals().get('corr', 'ID')} --out {out}` later")
        return schema.EXIT_TIMEOUT
    status = outcome.get("status", "failed")
    if status != "complete":
        console.print(f"[red]{status}[/red]: {outcome.get('error') or 'no reason given'}")
        return schema.exit_code_for(status if status in schema.ERROR_CODES else "failed")
    paths = write_publications(outcome.get("publications") or {}, out, outcome.get("title") or corr)
    console.print(f"[green]complete[/green]: [bold]{outcome.get('title')}[/bold]")
    for fmt, path in paths.items():
        console.print(f"  {fmt:<5} {path}")
    return schema.EXIT_OK


def run_query(settings: Settings, query: Callable[[StoryClient], T],
              show: Callable[[Console, T], None] | None) -> int:
    """One query against the story service, its errors mapped to exit codes.

    `show` puts the answer on screen for a person; without it the answer is printed as JSON
    and errors go to stderr, so a script reads clean JSON from stdout.
    """
    console = Console()
    errors = console if show is not None else Console(stderr=True)
    try:
        with StoryClient(settings.broker, settings=settings.peer_section()) as client:
            problem = _reachable(client, settings.broker, 0, errors, "story.query")
            if problem is not None:
                errors.print(f"[red]error[/red]: {problem[1]}")
                return problem[0]
            answer = query(client)
            if show is None:
                print_json(answer)
            else:
                show(console, answer)
    except RequestFailed as exc:
        errors.print(f"[red]error[/red] {exc.code}: {exc.message}")
        return schema.exit_code_for(exc.code)
    except RequestTimeout as exc:
        errors.print(f"[red]timeout[/red] {exc}")
        return schema.EXIT_TIMEOUT
    return schema.EXIT_OK


def print_json(answer: Any) -> None:
    """One JSON document on stdout, for scripts (no colours, no wrapping)."""
    print(json.dumps(answer, indent=2, default=str))


def show_list(console: Console, answer: dict[str, Any]) -> None:
    table = Table("story", "status", "title", "updated", "plot", title="stories")
    for s in answer["stories"]:
        style = STATUS_STYLE.get(s["status"], "")
        table.add_row(s["corr"], f"[{style}]{s['status']}[/{style}]", s.get("title") or "-",
                      _when(s.get("updated")), s.get("plot") or "")
    console.print(table)


def show_status(console: Console, s: dict[str, Any]) -> None:
    steps = s["steps"]
    style = STATUS_STYLE.get(s["status"], "")
    console.print(f"[bold]{s['corr']}[/bold] [{style}]{s['status']}[/{style}] "
                  f"{s.get('title') or ''}")
    console.print(f"  steps {steps['done']}/{steps['total']}: chapters "
                  f"{steps['chapters_written']}/{steps['chapters']}, pictures "
                  f"{steps['pictures_painted']}/{steps['chapters'] + 1}")
    if s.get("error"):
        console.print(f"  [red]error[/red] {s['error']}")


def show_history(console: Console, answer: dict[str, Any]) -> None:
    table = Table("time", "sender", "", "receiver", "type", "id",
                  title=f"history of {answer['corr']}")
    for h in answer["history"]:
        table.add_row(_when(h["time"]), h["sender"], "->", h["receiver"],
                      h["message_type"], h["id"])
    console.print(table)


def fetch_book(client: StoryClient, corr: str) -> tuple[str, dict[str, bytes]]:
    """A finished story's title and book files; not_found while there is no book yet."""
    status = client.status(corr)
    pubs = client.fetch(corr)
    if not pubs:
        raise RequestFailed("not_found", f"story {corr} is {status['status']}: no book yet")
    return status.get("title") or corr, pubs


def write_book(out: Path) -> Callable[[Console, tuple[str, dict[str, bytes]]], None]:
    """Shows a fetched book by writing its files to `out` and listing them."""
    def show(console: Console, book: tuple[str, dict[str, bytes]]) -> None:
        title, pubs = book
        for fmt, path in write_publications(pubs, out, title).items():
            console.print(f"  {fmt:<5} {path}")
    return show


def show_cancelled(console: Console, answer: dict[str, Any]) -> None:
    console.print(f"{answer['corr']}: {answer['status']}")
