"""Command line: ``watui`` (console), ``watui serve`` (headless), ``watui keys``, ``watui paths``.

Every option also reads ``WATUI_<OPTION>`` (click's ``auto_envvar_prefix``), and every timing
knob of :class:`watui.config.Settings` reads its own ``WATUI_*`` variable.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from watui import __version__
from watui.config import Settings
from watui.models import mask_url
from watui.stores.datadir import LOCK_FILE, make_private, private_umask, read_holder

if TYPE_CHECKING:
    from watui.stores.base import StoreProtocol


def make_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with the options given on the command line on top.

    A bad value ends the command with status 2 and one line per problem, naming the variable
    and what is wrong, never the value (``WATUI_PROXY`` may hold a password)."""
    given = {key: value for key, value in overrides.items() if value not in (None, ())}
    try:
        return Settings(**given)
    except ValidationError as exc:
        for error in exc.errors():
            name = "_".join(str(part) for part in error.get("loc", ())).upper()
            message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
            click.echo(f"watui: WATUI_{name}: {message}", err=True)
        sys.exit(2)


def exit_if_data_dir_unusable(run: Callable[[], None]) -> None:
    """Run ``run``; if the data dir is locked by another process or cannot be used, say so
    in one line and exit with status 2 (like a usage error), not with a traceback. So does a
    cluster node whose node id another live process runs (docs/cluster.md, "Node identity")."""
    from watui.cluster.nodes import NodeIdInUse
    from watui.stores.datadir import DataDirLocked, DataDirUnusable

    try:
        run()
    except (DataDirLocked, DataDirUnusable, NodeIdInUse) as exc:
        click.echo(f"watui: {exc}", err=True)
        sys.exit(2)


log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as text or as JSON objects (for log shippers) [text].",
)

isolation_option = click.option(
    "--engine-isolation",
    "engine_isolation",
    type=click.Choice(["process", "inline"]),
    default=None,
    help="Run engine sessions in supervised engine host processes, or in this one "
    "[process for neonize, inline for simulated].",
)

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where sessions, events and auth data live (default: the user data dir).",
)


database_url_option = click.option(
    "--database-url",
    envvar="WATUI_DATABASE_URL",
    default=None,
    help="postgresql://…: work on a cluster's keys in PostgreSQL instead of the data dir's "
    "SQLite database [env WATUI_DATABASE_URL].",
)


@click.group(invoke_without_command=True, context_settings={"auto_envvar_prefix": "WATUI"})
@click.option("--demo", is_flag=True, help="Simulated engine with a few sample sessions.")
@click.option("--engine", type=click.Choice(["neonize", "simulated"]), default=None)
@isolation_option
@data_dir_option
@log_format_option
@click.version_option(__version__, prog_name="watui")
@click.pass_context
def main(
    ctx: click.Context,
    demo: bool,
    engine: str | None,
    engine_isolation: str | None,
    data_dir: Path | None,
    log_format: str | None,
) -> None:
    """The watui console: every WhatsApp session in one live table."""
    # Everything watui creates (databases, their -wal/-shm, auth databases, keys) is private.
    private_umask()
    if ctx.invoked_subcommand is not None:
        return
    from watui.console.attach import AttachError, run_console_or_attach

    if demo:
        engine = engine or "simulated"
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="watui-demo-"))
    settings = make_settings(
        engine=engine, engine_isolation=engine_isolation, data_dir=data_dir, log_format=log_format
    )
    try:
        exit_if_data_dir_unusable(lambda: run_console_or_attach(settings, demo=demo))
    except AttachError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--host", default=None, help="Address to listen on [127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [8080].")
@click.option("--engine", type=click.Choice(["neonize", "simulated"]), default=None)
@isolation_option
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allowed browser origin (repeatable).")
@data_dir_option
@log_format_option
@click.option("--database-url", default=None, metavar="postgresql://…",
              help="Cluster mode: the PostgreSQL database every node shares (else embedded SQLite).")
@click.option("--redis-url", default=None, metavar="redis://…",
              help="Cluster mode: the Redis that fans events out between nodes.")
@click.option("--node-id", default=None, help="This node's name in the cluster [<host>-<pid>].")
@click.option("--node-capacity", type=int, default=None, help="Sessions this node runs at most; more are refused 503 OVERLOADED [1000 with neonize, 100000 simulated].")
@click.option("--node-url", default=None,
              help="The URL other nodes reach this node at [http://HOST:PORT].")
def serve(
    host: str | None,
    port: int | None,
    engine: str | None,
    engine_isolation: str | None,
    cors_origins: tuple[str, ...],
    data_dir: Path | None,
    log_format: str | None,
    database_url: str | None,
    redis_url: str | None,
    node_id: str | None,
    node_capacity: int | None,
    node_url: str | None,
) -> None:
    """Headless mode: the same sessions over HTTP and Server-Sent Events.

    With --database-url, this process is one node of a cluster (docs/cluster.md)."""
    from watui.server import run_server

    settings = make_settings(
        host=host, port=port, engine=engine, engine_isolation=engine_isolation, data_dir=data_dir,
        cors_origins=list(cors_origins) or None, log_format=log_format,
        database_url=database_url, redis_url=redis_url, node_id=node_id,
        node_capacity=node_capacity, node_url=node_url,
    )
    exit_if_data_dir_unusable(lambda: run_server(settings))


@main.group()
def keys() -> None:
    """Manage API keys for headless mode."""


async def _open_store(settings: Settings) -> StoreProtocol:
    """The cluster's PostgreSQL store with a database URL, else the data dir's SQLite store.
    No data dir lock: key commands run beside a server (SQLite's own locking; PostgreSQL's
    transactions)."""
    if settings.database_url is not None:
        import asyncpg

        from watui.stores.postgres import PostgresStore

        try:
            return await PostgresStore.open(settings.database_url, pool_size=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise click.ClickException(
                f"cannot open the database {mask_url(settings.database_url)}: {exc}"
            ) from None
    from watui.stores.sqlite import Store

    try:
        make_private(settings.data_dir)
        return await Store.open(settings.db_path, synchronous=settings.sqlite_synchronous)
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.ClickException(f"cannot open the database {settings.db_path}: {reason}") from None


def _with_store(settings: Settings, fn: Any) -> Any:
    async def go() -> Any:
        store = await _open_store(settings)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


@keys.command("create")
@click.option("--owner", required=True, help="Owner name: the key sees only this owner's sessions.")
@click.option("--admin", is_flag=True, help="An admin key sees every owner's sessions, without limits.")
@data_dir_option
@database_url_option
def keys_create(owner: str, admin: bool, data_dir: Path | None, database_url: str | None) -> None:
    """Create a key. The key itself is printed once, on the last line."""
    settings = make_settings(data_dir=data_dir, database_url=database_url)
    key, secret = _with_store(settings, lambda store: store.create_api_key(owner, admin=admin))
    click.echo(f"Created {key.role} key {key.id} for owner {key.owner!r}. Store it now; it is not shown again:")
    click.echo(secret)


@keys.command("list")
@data_dir_option
@database_url_option
def keys_list(data_dir: Path | None, database_url: str | None) -> None:
    """List keys (never the secrets themselves)."""
    settings = make_settings(data_dir=data_dir, database_url=database_url)
    rows = _with_store(settings, lambda store: store.list_api_keys())
    if not rows:
        click.echo("No keys yet. Create one with: watui keys create --owner NAME")
        return
    click.echo(f"{'ID':<14} {'OWNER':<20} {'ROLE':<6} {'PREFIX':<14} {'CREATED':<20} REVOKED")
    for key in rows:
        revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else "-"
        created = key.created_at.strftime("%Y-%m-%d %H:%M")
        click.echo(f"{key.id:<14} {key.owner:<20} {key.role:<6} {key.prefix:<14} {created:<20} {revoked}")


@keys.command("revoke")
@click.argument("key_id")
@data_dir_option
@database_url_option
def keys_revoke(key_id: str, data_dir: Path | None, database_url: str | None) -> None:
    """Revoke a key by its id (see ``watui keys list``)."""
    settings = make_settings(data_dir=data_dir, database_url=database_url)
    if not _with_store(settings, lambda store: store.revoke_api_key(key_id)):
        raise click.ClickException(f"No active key with id {key_id!r}")
    click.echo(f"Revoked {key_id}")


@main.command()
@data_dir_option
def paths(data_dir: Path | None) -> None:
    """Show where watui keeps its files."""
    settings = make_settings(data_dir=data_dir)
    click.echo(f"data dir:   {settings.data_dir}")
    click.echo(f"database:   {settings.db_path}")
    click.echo(f"auth dir:   {settings.auth_dir}")
    click.echo(f"admin key:  {settings.data_dir / 'admin.key'}")
    holder = read_holder(settings.data_dir)
    click.echo(f"lock:       {settings.data_dir / LOCK_FILE} "
               f"({'held by ' + holder.describe() if holder else 'free'})")
    from watui.console.config import default_config_path

    config_path = default_config_path()
    click.echo(f"console config: {config_path}  (key bindings and theme)")
    for line in _console_config_check(config_path):
        click.echo(f"  {line}")


def _console_config_check(path: Path) -> list[str]:
    """What of ``console.toml`` the console would not use, and why (the same check it runs)."""
    from watui.app import WatuiApp
    from watui.console.config import ConsoleConfig, describe_check
    from watui.screens.keymap import key_scopes

    config = ConsoleConfig.load(path)
    if not config.keys and not config.problem:
        return []
    return describe_check(config, key_scopes(WatuiApp))


key_option = click.option(
    "--key", envvar="WATUI_API_KEY", default=None,
    help="API key. Prefer WATUI_API_KEY or --key-file: a command line shows in `ps` to every "
    "user of this machine [env WATUI_API_KEY].",
)

key_file_option = click.option(
    "--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Read the API key from this file (keep it mode 0600).",
)


def resolve_key_options(ctx: click.Context, url: str, key: str | None, key_file: Path | None,
                        data_dir: Path) -> str:
    """The key from ``--key-file``, ``WATUI_API_KEY``, ``--key`` (with a warning: ``ps`` shows
    it), the local admin key, or a hidden prompt (see ``watui.console.attach.resolve_key``)."""
    from click.core import ParameterSource

    from watui.console.attach import KEY_ON_COMMAND_LINE, AttachError, ask_key, resolve_key

    if ctx.get_parameter_source("key") is ParameterSource.COMMANDLINE:
        if key_file is not None:
            raise AttachError("Give the key one way: --key-file or --key, not both.")
        click.echo(KEY_ON_COMMAND_LINE, err=True)
    return resolve_key(url, key, data_dir, key_file=key_file, ask=ask_key)


@main.command()
@click.argument("url", envvar="WATUI_URL", required=False)
@key_option
@key_file_option
@data_dir_option
@click.pass_context
def attach(ctx: click.Context, url: str | None, key: str | None, key_file: Path | None,
           data_dir: Path | None) -> None:
    """The console, driving a running `watui serve` at URL (env WATUI_URL).

    The API key comes from WATUI_API_KEY, --key-file, the data dir's admin.key (for a server
    on this machine), or a prompt that does not show it."""
    from watui.console.attach import AttachError, normalize_url, run_attach

    if not url:
        raise click.UsageError("Which server? Pass its URL (watui attach http://HOST:PORT) or set WATUI_URL.")
    settings = make_settings(data_dir=data_dir)
    try:
        url = normalize_url(url)
        run_attach(url, resolve_key_options(ctx, url, key, key_file, settings.data_dir), settings)
    except AttachError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on.")
@click.option("--attach", "attach_url", envvar="WATUI_URL", default=None,
              help="Drive a running server at this URL instead of running one here [env WATUI_URL].")
@key_option
@key_file_option
@click.option("--public-url", default=None,
              help="The address browsers use, if not http://HOST:PORT (a proxy's, say); requests for "
              "any other host name are refused.")
@click.option("--token", envvar="WATUI_WEB_TOKEN", default=None,
              help="The token the URL carries [env WATUI_WEB_TOKEN; a new random one each run].")
@click.option("--max-tabs", type=click.IntRange(min=1), default=8, show_default=True,
              help="Browser tabs open at once (each runs a console process).")
@click.option("--engine", type=click.Choice(["neonize", "simulated"]), default=None)
@data_dir_option
@click.pass_context
def web(ctx: click.Context, host: str, port: int, attach_url: str | None, key: str | None,
        key_file: Path | None, public_url: str | None, token: str | None, max_tabs: int, engine: str | None,
        data_dir: Path | None) -> None:
    """The console in a browser (each tab is a console of the same sessions), behind a token:
    open the URL it prints."""
    from watui.console.attach import AttachError
    from watui.console.web import PortInUse, run_web

    if token is not None and len(token.strip()) < 16:
        raise click.BadParameter("use at least 16 characters (or leave it out for a random one)",
                                 param_hint="--token / WATUI_WEB_TOKEN")
    settings = make_settings(engine=engine, data_dir=data_dir)
    try:
        if attach_url:  # --key/--key-file are for --attach: the same sources as watui attach
            from watui.console.attach import normalize_url

            key = resolve_key_options(ctx, normalize_url(attach_url), key, key_file, settings.data_dir)
        exit_if_data_dir_unusable(lambda: run_web(settings, host=host, port=port, attach=attach_url, key=key,
                                                  public_url=public_url, token=token, max_tabs=max_tabs))
    except AttachError as exc:
        raise click.ClickException(str(exc)) from None
    except PortInUse as exc:
        click.echo(f"watui web: {exc} (another watui web? choose one with --port)", err=True)
        sys.exit(2)
