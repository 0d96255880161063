"""The `storymesh` command line: each command builds settings, sets up logging, calls one function.

Rule for every command: `--bind` for what binds, `--broker` for what connects.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional, TypeVar

import typer

from storymesh import settings as settings_mod
from storymesh.core import schema
from storymesh.errors import ConfigError, RequestFailed, StorymeshError
from storymesh.plumbing.logs import setup_logging
from storymesh.settings import Settings

if TYPE_CHECKING:  # imported when a command runs: `storymesh --help` stays quick
    from rich.console import Console

    from storymesh.story.api import StoryClient

T = TypeVar("T")

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="AI story agents on a ZeroMQ Majordomo mesh."
)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the effective configuration.")
app.add_typer(config_app, name="config")
keys_app = typer.Typer(no_args_is_help=True, help="CurveZMQ key pairs (docs/security.md).")
app.add_typer(keys_app, name="keys")

ConfigOpt = Annotated[
    Optional[Path], typer.Option("--config", help="TOML file (default config/storymesh.toml)")
]
BindOpt = Annotated[
    Optional[str], typer.Option("--bind", help="endpoint to bind, e.g. tcp://127.0.0.1:5555")
]
BrokerOpt = Annotated[
    Optional[str],
    typer.Option("--broker", help="broker endpoint to connect to (a pair: both, comma-separated)"),
]
LogLevelOpt = Annotated[Optional[str], typer.Option("--log-level", help="debug|info|warning|error")]
LogFormatOpt = Annotated[Optional[str], typer.Option("--log-format", help="text|json")]
TimeoutOpt = Annotated[
    Optional[float], typer.Option("--timeout", help="seconds to wait per attempt")
]
CurveSecretOpt = Annotated[
    Optional[str],
    typer.Option("--curve-secret", help="own CURVE secret key file (NAME.key_secret)"),
]
BrokerKeyOpt = Annotated[
    Optional[str],
    typer.Option("--broker-key", help="the broker's CURVE public key file (turns keys on)"),
]


def _settings(config: Path | None, **flags: Any) -> Settings:
    """Load the layered settings and configure logging, or exit 2 with a one-line error."""
    try:
        settings = settings_mod.load(config, flags=flags)
    except ConfigError as exc:
        typer.echo(f"storymesh: configuration error: {exc}", err=True)
        raise typer.Exit(schema.EXIT_USAGE) from None
    setup_logging(settings.log_level, settings.log_format)
    return settings


def _fail(exc: StorymeshError, code: int) -> typer.Exit:
    typer.echo(f"storymesh: {exc}", err=True)
    return typer.Exit(code)


@app.command()
def broker(
    bind: BindOpt = None,
    heartbeat_interval: Annotated[Optional[float], typer.Option(help="seconds")] = None,
    liveness: Annotated[
        Optional[int], typer.Option(help="missed heartbeats before a worker is dead")
    ] = None,
    busy_timeout: Annotated[
        Optional[float], typer.Option(help="seconds, for workers that do not heartbeat while busy")
    ] = None,
    max_attempts: Annotated[
        Optional[int], typer.Option(help="dispatches per request before worker_lost")
    ] = None,
    queue_limit: Annotated[Optional[int], typer.Option(help="queued requests per service")] = None,
    metrics_bind: Annotated[
        Optional[str],
        typer.Option(help="serve Prometheus /metrics on [HOST:]PORT (host defaults to 127.0.0.1)"),
    ] = None,
    client_queue_limit: Annotated[
        Optional[int], typer.Option(help="queued requests per client and service")
    ] = None,
    curve_secret: CurveSecretOpt = None,
    allow_dir: Annotated[
        Optional[str],
        typer.Option("--allow-dir", help="with keys: folder of accepted public keys (*.key)"),
    ] = None,
    roles: Annotated[
        Optional[str],
        typer.Option(
            "--roles", help="with keys: roles TOML file (default: every allowed key has every role)"
        ),
    ] = None,
    ha: Annotated[
        Optional[str], typer.Option("--ha", help="one of a broker pair: primary or backup")
    ] = None,
    ha_bind: Annotated[
        Optional[str], typer.Option("--ha-bind", help="pair: the state endpoint to bind")
    ] = None,
    ha_peer: Annotated[
        Optional[str], typer.Option("--ha-peer", help="pair: the other broker's state endpoint")
    ] = None,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Run the broker daemon (SIGHUP reloads the allow-list and roles)."""
    from storymesh.broker.server import run_broker
    from storymesh.plumbing.signals import install_signal_handlers

    settings = _settings(
        config,
        bind=bind,
        heartbeat_interval=heartbeat_interval,
        liveness=liveness,
        busy_timeout=busy_timeout,
        max_attempts=max_attempts,
        queue_limit=queue_limit,
        metrics_bind=metrics_bind,
        client_queue_limit=client_queue_limit,
        curve_secret=curve_secret,
        allow_dir=allow_dir,
        roles=roles,
        ha=ha,
        ha_bind=ha_bind,
        ha_peer=ha_peer,
        log_level=log_level,
        log_format=log_format,
    )
    stop = threading.Event()
    install_signal_handlers(stop)
    try:
        code = run_broker(settings.broker_section(), stop)
    except StorymeshError as exc:
        raise _fail(exc, schema.EXIT_USAGE) from None
    raise typer.Exit(code)


@app.command()
def agent(
    name: Annotated[
        str,
        typer.Argument(
            help="echo | author | illustrator | publisher | story; "
            "a suffix after '-' names the instance (illustrator-gpu1)"
        ),
    ],
    broker: BrokerOpt = None,
    slots: Annotated[
        Optional[int], typer.Option(help="worker connections around one loaded model")
    ] = None,
    backend: Annotated[
        Optional[str], typer.Option(help="embedded | transformers | diffusers")
    ] = None,
    model: Annotated[Optional[str], typer.Option(help="hub id or local folder")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu | cuda | cuda:1 | auto")] = None,
    dtype: Annotated[
        Optional[str], typer.Option(help="auto | float32 | float16 | bfloat16")
    ] = None,
    torch_threads: Annotated[Optional[int], typer.Option(help="torch CPU threads")] = None,
    metrics_bind: Annotated[
        Optional[str],
        typer.Option(help="serve Prometheus /metrics on [HOST:]PORT (host defaults to 127.0.0.1)"),
    ] = None,
    strict_mdp: Annotated[
        Optional[bool], typer.Option("--strict-mdp", help="READY without the metadata frame")
    ] = None,
    heartbeat_interval: Annotated[Optional[float], typer.Option(help="seconds")] = None,
    liveness: Annotated[
        Optional[int], typer.Option(help="missed heartbeats before the broker is dead")
    ] = None,
    curve_secret: CurveSecretOpt = None,
    broker_key: BrokerKeyOpt = None,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Run an agent daemon that serves one service."""
    from storymesh.ops.daemons import NAMES

    name = name.partition("-")[0]  # systemd's storymesh-agent@illustrator-gpu1 runs the illustrator
    if name not in NAMES:
        typer.echo(
            f"storymesh: unknown agent {name!r}; choose one of {', '.join(NAMES)}",
            err=True,
        )
        raise typer.Exit(schema.EXIT_USAGE)
    section = {
        f"{name}.{k}": v
        for k, v in dict(  # noqa: C408  (keyword form mirrors the flags)
            slots=slots,
            backend=backend,
            model=model,
            device=device,
            dtype=dtype,
            torch_threads=torch_threads,
            metrics_bind=metrics_bind,
        ).items()
    }
    settings = _settings(
        config,
        broker=broker,
        strict_mdp=strict_mdp,
        heartbeat_interval=heartbeat_interval,
        liveness=liveness,
        curve_secret=curve_secret,
        broker_key=broker_key,
        log_level=log_level,
        log_format=log_format,
        **section,
    )
    from storymesh.ops.daemons import run_named_agent

    try:
        code = run_named_agent(name, settings)
    except StorymeshError as exc:
        raise _fail(exc, schema.EXIT_USAGE) from None
    raise typer.Exit(code)


@app.command()
def request(
    service: Annotated[str, typer.Argument(help="service name, e.g. echo or story.author")],
    json_payload: Annotated[
        str, typer.Option("--json", help="the payload as a JSON object")
    ] = "{}",
    broker: BrokerOpt = None,
    timeout: TimeoutOpt = None,
    retries: Annotated[Optional[int], typer.Option(help="attempts before giving up")] = None,
    save_dir: Annotated[
        Optional[Path], typer.Option(help="write binary values to files here")
    ] = None,
    partials: Annotated[bool, typer.Option(help="print PARTIAL replies as they arrive")] = True,
    curve_secret: CurveSecretOpt = None,
    broker_key: BrokerKeyOpt = None,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Send one request and print the reply as JSON (exit code != 0 on error or timeout)."""
    from storymesh.ops.request import run_request

    settings = _settings(
        config,
        broker=broker,
        request_timeout=timeout,
        retries=retries,
        curve_secret=curve_secret,
        broker_key=broker_key,
        log_level=log_level or "warning",
    )
    try:
        payload = json.loads(json_payload)
    except json.JSONDecodeError as exc:
        typer.echo(f"storymesh: --json is not valid JSON: {exc}", err=True)
        raise typer.Exit(schema.EXIT_USAGE) from None
    if not isinstance(payload, dict):
        typer.echo("storymesh: --json must be a JSON object", err=True)
        raise typer.Exit(schema.EXIT_USAGE)
    raise typer.Exit(
        run_request(settings, service, payload, save_dir=save_dir, show_partials=partials)
    )


@app.command()
def health(
    broker: BrokerOpt = None,
    service: Annotated[
        Optional[list[str]],
        typer.Option("--service", help="a service that must have workers (repeatable)"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the broker")] = 2.0,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="print status and each service's workers as JSON"),
    ] = False,
    curve_secret: CurveSecretOpt = None,
    broker_key: BrokerKeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Exit 0 when healthy, 1 when degraded (a service without workers), 2 when down."""
    from storymesh.ops.health import check_health, read_health

    if timeout <= 0:
        typer.echo("storymesh: --timeout must be > 0", err=True)
        raise typer.Exit(schema.EXIT_USAGE)
    settings = _settings(
        config, broker=broker, curve_secret=curve_secret, broker_key=broker_key, log_level="error"
    )
    if not as_json:
        code, reason = check_health(settings, service or [], timeout)
        typer.echo(reason)
        raise typer.Exit(code)
    try:
        report = read_health(settings, service or [], timeout)
    except RequestFailed as exc:  # forbidden: the snapshot needs the admin role
        raise _fail(exc, schema.exit_code_for(exc.code)) from None
    typer.echo(json.dumps(report.as_json(), indent=2))
    raise typer.Exit(report.exit_code)


@app.command()
def monitor(
    broker: BrokerOpt = None,
    refresh: Annotated[float, typer.Option(help="seconds between refreshes")] = 0.25,
    once: Annotated[
        bool, typer.Option("--once", help="print one snapshot and exit (2 if the broker is down)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="with --once: print JSON")] = False,
    curve_secret: CurveSecretOpt = None,
    broker_key: BrokerKeyOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Live view of the broker, services, workers and stories in progress."""
    from storymesh.ops.monitor import run_monitor

    if refresh <= 0:
        typer.echo("storymesh: --refresh must be > 0", err=True)
        raise typer.Exit(schema.EXIT_USAGE)
    settings = _settings(
        config, broker=broker, curve_secret=curve_secret, broker_key=broker_key, log_level="error"
    )
    raise typer.Exit(run_monitor(settings, refresh=refresh, once=once or as_json, as_json=as_json))


@app.command()
def demo(
    count: Annotated[int, typer.Option(help="requests to send through the mesh")] = 20,
    config: ConfigOpt = None,
) -> None:
    """Start a broker and two echo agents in this process and send requests through them."""
    from storymesh.ops.demo import run_demo

    settings = _settings(config, log_level="warning")
    raise typer.Exit(run_demo(settings, count))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def story(
    ctx: typer.Context,
    plot: Annotated[Optional[str], typer.Option(help="what happens in the story")] = None,
    plot_file: Annotated[Optional[Path], typer.Option(help="read the plot from a file")] = None,
    themes: Annotated[
        Optional[list[str]],
        typer.Option("--themes", "--theme", help="themes (repeat, or list after --themes)"),
    ] = None,
    age: Annotated[str, typer.Option("--age", help="target age band, e.g. 4-7")] = "4-7",
    length: Annotated[str, typer.Option(help="short | medium | long")] = "short",
    chapters: Annotated[
        Optional[int], typer.Option(help="number of chapters (overrides --length)")
    ] = None,
    style: Annotated[
        str, typer.Option("--style", help="art style, e.g. children_book, watercolor")
    ] = "children_book",
    fmt: Annotated[
        Optional[list[str]],
        typer.Option("--format", help="pdf | html | epub (repeatable; default all)"),
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="same seed, same book")] = None,
    title: Annotated[
        Optional[str], typer.Option(help="the book's title (default: the author's)")
    ] = None,
    language: Annotated[
        Optional[str],
        typer.Option(help="language tag of the book, e.g. en, fr, pt-BR (default en; "
                     "other than English needs the transformers author)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="folder for the finished book")] = Path("out"),
    timeout: Annotated[float, typer.Option(help="seconds to wait without progress")] = 3600.0,
    detach: Annotated[bool, typer.Option(help="submit, print the story id, return")] = False,
    local: Annotated[bool, typer.Option(help="run the whole mesh inside this process")] = False,
    illustrators: Annotated[int, typer.Option(help="illustrators in --local mode")] = 1,
    broker: BrokerOpt = None,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    curve_secret: CurveSecretOpt = None,
    broker_key: BrokerKeyOpt = None,
) -> None:
    """Turn a plot into an illustrated book (PDF, HTML, EPUB)."""
    from storymesh.cli.console import run_story

    settings = _settings(
        config,
        broker=broker,
        curve_secret=curve_secret,
        broker_key=broker_key,
        log_level=log_level or "warning",
    )
    if plot_file is not None:
        try:
            plot = plot_file.read_text(encoding="utf-8")
        except OSError as exc:
            typer.echo(f"storymesh: cannot read --plot-file: {exc}", err=True)
            raise typer.Exit(schema.EXIT_USAGE) from None
    if not plot:
        typer.echo("storymesh: give the story a --plot (or --plot-file)", err=True)
        raise typer.Exit(schema.EXIT_USAGE)
    # `--themes courage friendship`: values after the first arrive as extra arguments.
    all_themes = [t.strip() for item in [*(themes or []), *ctx.args] for t in item.split(",")]
    request: dict[str, Any] = {
        "plot": plot,
        "themes": [t for t in all_themes if t],
        "target_age": age,
        "length": length,
        "art_style": style,
    }
    extras = {"chapters": chapters, "formats": fmt, "seed": seed, "title": title,
              "language": language}
    request.update({k: v for k, v in extras.items() if v is not None})
    raise typer.Exit(
        run_story(
            settings,
            request,
            out=out,
            local=local,
            detach=detach,
            timeout=timeout,
            illustrators=illustrators,
        )
    )


# --- the story queries: each names its query and how to show the answer ------------------

StoryId = Annotated[str, typer.Argument(help="the story id (correlation id)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the answer as JSON, for scripts")]


def _story_query(query: Callable[[StoryClient], T], show: Callable[[Console, T], None],
                 as_json: bool, config: Path | None, broker: str | None,
                 curve_secret: str | None, broker_key: str | None) -> NoReturn:
    """Settings, one query on a StoryClient, the answer shown (or printed as JSON), exit."""
    from storymesh.cli.console import run_query

    settings = _settings(
        config, broker=broker, curve_secret=curve_secret, broker_key=broker_key, log_level="warning"
    )
    raise typer.Exit(run_query(settings, query, None if as_json else show))


@app.command("list")
def list_stories(limit: int = 50, as_json: JsonOpt = False, broker: BrokerOpt = None,
                 config: ConfigOpt = None, curve_secret: CurveSecretOpt = None,
                 broker_key: BrokerKeyOpt = None) -> None:
    """Recent stories and their state."""
    from storymesh.cli.console import show_list
    from storymesh.ops.stories import stories_json

    _story_query(lambda client: stories_json(client, limit), show_list,
                 as_json, config, broker, curve_secret, broker_key)


@app.command()
def status(corr: StoryId, as_json: JsonOpt = False, broker: BrokerOpt = None,
           config: ConfigOpt = None, curve_secret: CurveSecretOpt = None,
           broker_key: BrokerKeyOpt = None) -> None:
    """A story's status and progress."""
    from storymesh.cli.console import show_status
    from storymesh.ops.stories import story_status_json

    _story_query(lambda client: story_status_json(client, corr), show_status,
                 as_json, config, broker, curve_secret, broker_key)


@app.command()
def history(corr: StoryId, as_json: JsonOpt = False, broker: BrokerOpt = None,
            config: ConfigOpt = None, curve_secret: CurveSecretOpt = None,
            broker_key: BrokerKeyOpt = None) -> None:
    """A story's messages: sender -> receiver, type, time."""
    from storymesh.cli.console import show_history
    from storymesh.ops.stories import story_history_json

    _story_query(lambda client: story_history_json(client, corr), show_history,
                 as_json, config, broker, curve_secret, broker_key)


@app.command()
def fetch(corr: StoryId,
          out: Annotated[Path, typer.Option(help="folder to write the book to")] = Path("out"),
          broker: BrokerOpt = None, config: ConfigOpt = None,
          curve_secret: CurveSecretOpt = None, broker_key: BrokerKeyOpt = None) -> None:
    """Write a finished story's book files to a folder."""
    from storymesh.cli.console import fetch_book, write_book

    _story_query(lambda client: fetch_book(client, corr), write_book(out),
                 False, config, broker, curve_secret, broker_key)


@app.command()
def cancel(corr: StoryId, broker: BrokerOpt = None, config: ConfigOpt = None,
           curve_secret: CurveSecretOpt = None, broker_key: BrokerKeyOpt = None) -> None:
    """Cancel a story that is still running."""
    from storymesh.cli.console import show_cancelled

    _story_query(lambda client: client.cancel(corr), show_cancelled,
                 False, config, broker, curve_secret, broker_key)


@keys_app.command("generate")
def keys_generate(
    name: Annotated[str, typer.Argument(help="the key's name: the broker knows the peer by it")],
    directory: Annotated[
        Path, typer.Option("--dir", help="folder for NAME.key and NAME.key_secret")
    ] = Path("keys"),
    force: Annotated[bool, typer.Option("--force", help="replace an existing key pair")] = False,
) -> None:
    """Write a CurveZMQ key pair: DIR/NAME.key (public) and DIR/NAME.key_secret (secret)."""
    from storymesh.transport.curve import generate_keys

    try:
        public, secret = generate_keys(name, directory, force=force)
    except ConfigError as exc:
        raise _fail(exc, schema.EXIT_USAGE) from None
    typer.echo(f"public key: {public}  (copy it to the broker's allow-list folder)")
    typer.echo(f"secret key: {secret}  (keep it on this machine, readable only by its user)")


# --- the HTTP gateway ------------------------------------------------------------------


@app.command()
def gateway(
    broker: BrokerOpt = None,
    http: Annotated[
        Optional[str],
        typer.Option("--http", help="HOST:PORT to listen on (default 127.0.0.1:8080)"),
    ] = None,
    api_keys: Annotated[
        Optional[str],
        typer.Option("--api-keys", help="API keys file (storymesh keys api NAME --file FILE)"),
    ] = None,
    allow_anonymous: Annotated[
        Optional[bool],
        typer.Option("--allow-anonymous", help="serve a non-loopback address without keys"),
    ] = None,
    curve_secret: CurveSecretOpt = None,
    broker_key: BrokerKeyOpt = None,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Serve the HTTP API and the web page in front of the mesh (needs the `web` extra)."""
    settings = _settings(
        config,
        broker=broker,
        curve_secret=curve_secret,
        broker_key=broker_key,
        log_level=log_level,
        log_format=log_format,
        **{"gateway.http": http, "gateway.api_keys": api_keys,
           "gateway.allow_anonymous": allow_anonymous},
    )
    try:
        from storymesh.gateway.server import run_gateway
    except ImportError as exc:
        typer.echo(f"storymesh: the gateway needs the web extra ({exc.name} is missing): "
                   "pip install 'storymesh[web]'", err=True)
        raise typer.Exit(schema.EXIT_USAGE) from None
    try:
        code = run_gateway(settings)
    except StorymeshError as exc:
        raise _fail(exc, schema.EXIT_USAGE) from None
    raise typer.Exit(code)


@keys_app.command("api")
def keys_api(
    name: Annotated[str, typer.Argument(help="the key's name: it owns the stories it submits")],
    file: Annotated[
        Path, typer.Option("--file", help="the gateway's API keys file (created with mode 0600)")
    ],
) -> None:
    """Add an API key for the HTTP gateway; its secret is printed once, as the last line."""
    from storymesh.gateway.keys import add_key

    try:
        secret = add_key(file, name)
    except ConfigError as exc:
        raise _fail(exc, schema.EXIT_USAGE) from None
    typer.echo(f"added API key {name!r} to {file} (it stores only the SHA-256); the secret, "
               "shown this once:")
    typer.echo(secret)


@app.command()
def up(
    bind: BindOpt = None,
    authors: Annotated[int, typer.Option(min=1, help="author instances")] = 1,
    illustrators: Annotated[int, typer.Option(min=1, help="illustrator instances")] = 1,
    http: Annotated[
        Optional[str],
        typer.Option("--http", help="also start the HTTP gateway on HOST:PORT (web extra)"),
    ] = None,
    metrics_base: Annotated[
        Optional[str],
        typer.Option(
            "--metrics-base",
            help="[HOST:]PORT: every child serves Prometheus /metrics, on PORT, PORT+1, ...",
        ),
    ] = None,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Start a broker and the story agents on this machine, supervise them; Ctrl-C stops all."""
    from storymesh.ops.supervisor import run_up

    settings = _settings(config, bind=bind, log_level=log_level, log_format=log_format,
                         **{"gateway.http": http})
    try:
        code = run_up(settings, authors=authors, illustrators=illustrators, config=config,
                      http=http is not None, metrics_base=metrics_base)
    except StorymeshError as exc:
        raise _fail(exc, schema.EXIT_USAGE) from None
    raise typer.Exit(code)


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Print the effective configuration and where each value came from."""
    from rich.console import Console
    from rich.table import Table

    settings = _settings(config, log_level="error")
    rows = settings_mod.describe(settings)
    if as_json:
        typer.echo(json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, indent=2))
        return
    table = Table("key", "value", "source", title="storymesh configuration")
    for key, value, source in rows:
        table.add_row(key, repr(value), source)
    Console().print(table)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
