"""The `kmm` command: serve, migrate, create-user, seed-demo, and operations."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from app.core.config import ConfigurationError, Settings, get_settings

if TYPE_CHECKING:
    from app.workflows.key_rotation import RotationStopped

# Plain tracebacks: rich ones print local variables, which may hold secrets.
cli = typer.Typer(help="KMM Confidential Records Service", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False,
                  pretty_exceptions_show_locals=False)
T = TypeVar("T")


def _settings() -> Settings:
    try:
        settings = get_settings()
        settings.require_secrets()
        return settings
    except ConfigurationError as exc:
        typer.secho(f"configuration error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


def run_with_state(fn: Callable[..., Awaitable[T]], settings: Settings | None = None) -> T:
    """Run ``fn(state)`` with a fresh AppState and dispose of it afterwards."""
    from app.core.state import AppState

    async def _go() -> T:
        state = AppState.build(settings or _settings())
        try:
            return await fn(state)
        finally:
            await state.engine.dispose()

    return asyncio.run(_go())


def _migrate(settings: Settings) -> None:
    from pathlib import Path

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from app.core.migrations import upgrade

    database = make_url(settings.database_url).database if settings.is_sqlite else None
    if database and database != ":memory:" and not Path(database).parent.is_dir():
        typer.secho(f"cannot migrate the database: the directory of {database} does not exist",
                    fg="red", err=True)
        raise typer.Exit(1)
    try:
        upgrade(settings)
    except (SQLAlchemyError, OSError) as exc:
        # The driver's first line says what failed (host, port, file); no values or secrets.
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
        typer.secho(f"cannot migrate the database: {reason}", fg="red", err=True)
        raise typer.Exit(1) from exc


@cli.command()
def migrate() -> None:
    """Bring the database schema to the latest migration."""
    _migrate(_settings())
    typer.echo("database migrated to head")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    workers: Annotated[int, typer.Option(min=1, envvar="WEB_CONCURRENCY",
                                         help="worker processes (default: WEB_CONCURRENCY, else 1)")] = 1,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
) -> None:
    """Migrate, then serve with uvicorn (uvloop and httptools; one socket per worker)."""
    from app import serving

    settings = _settings()
    try:  # before migrating: a second `make run` says so at once
        serving.check_port_free(host, port)
    except serving.PortInUse as exc:
        typer.secho(f"cannot serve: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    if migrate_first:
        _migrate(settings)
    # Make sure generated local secrets exist before workers start (they all read one file).
    _ = settings.signing_key, settings.keyring
    from app.workflows.key_rotation import verify_master_keys

    try:  # the lifespan checks again; this says it in one line before uvicorn starts
        run_with_state(verify_master_keys, settings)
    except ConfigurationError as exc:
        typer.secho(f"refusing to start: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    from app.core.metrics import multiprocess_directory

    # Workers count into files in one directory; /metrics in any of them sums them all.
    with multiprocess_directory(enabled=workers > 1):
        serving.serve(host=host, port=port, workers=workers, trusted_proxies=settings.trusted_proxies)


@cli.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="login email")],
    name: Annotated[str, typer.Option(help="full name")],
    role: Annotated[str, typer.Option(help="colleague, director or trustee")],
    line_manager: Annotated[str | None, typer.Option(help="the line manager's email")] = None,
    staff_type: Annotated[str | None, typer.Option(help="employee, volunteer or intern")] = None,
    password: Annotated[str | None, typer.Option(help="the password (prefer --password-stdin)")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Create an account (DESIGN §10)."""
    from sqlmodel import select

    from app.core.errors import Problem
    from app.models.users import User, UserCreate
    from app.workflows import users

    if password_stdin:
        if password:
            typer.secho("give --password or --password-stdin, not both", fg="red", err=True)
            raise typer.Exit(2)
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        typer.secho("a password is required: --password or --password-stdin", fg="red", err=True)
        raise typer.Exit(2)

    async def _create(state):  # type: ignore[no-untyped-def]
        async with state.sessionmaker() as session:
            manager_id = None
            if line_manager:
                manager_id = (
                    await session.execute(select(User.id).where(User.email == line_manager.lower()))
                ).scalar_one_or_none()
                if manager_id is None:
                    raise Problem(422, f"line_manager: no account with email {line_manager}")
            data = UserCreate.model_validate({"email": email, "full_name": name, "role": role,
                                              "staff_type": staff_type, "line_manager_id": manager_id,
                                              "password": password})
            return await users.create_user(session, data=data, passwords=state.passwords,
                                              now=state.clock.now(), actor=None)

    user = _refusing_bad_input(_create)
    typer.echo(f"created {user.role} {user.email} ({user.id})")


def _refusing_bad_input(work):  # type: ignore[no-untyped-def]
    """Run ``work`` with the service's state; bad input or a refusal exits 2 with a message that
    names the field and the rule, never the value given."""
    from pydantic import ValidationError

    from app.core.errors import Problem

    try:
        return run_with_state(work)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        typer.secho(f"invalid input: {problems}", fg="red", err=True)
        raise typer.Exit(2) from exc
    except Problem as exc:
        typer.secho(f"refused: {exc.detail}", fg="red", err=True)
        raise typer.Exit(2) from exc


@cli.command("create-client")
def create_client(
    name: Annotated[str, typer.Option(help="what the other system is")],
    scope: Annotated[list[str] | None, typer.Option(help="a scope it holds; repeat for more")] = None,
) -> None:
    """Create a service client and print its secret, this once (only its hash is kept)."""

    from app.models.service_clients import ServiceClientCreate
    from app.workflows import service_clients

    async def _create(state):  # type: ignore[no-untyped-def]
        async with state.sessionmaker() as session:
            data = ServiceClientCreate.model_validate({"name": name, "scopes": scope or []})
            return await service_clients.create_client(session, data=data, now=state.clock.now(), actor=None)

    created = _refusing_bad_input(_create)
    typer.echo(f"created service client {created.name} ({created.id})")
    typer.echo(f"client_id: {created.client_id}")
    typer.echo(f"client_secret: {created.client_secret}")
    typer.echo(f"scope: {' '.join(created.scopes)}")
    typer.echo("The secret is shown this once: keep it in the other system's secret store.")


@cli.command("seed-demo")
def seed_demo() -> None:
    """Seed a demo organisation (idempotent) and print the logins."""
    from app import demo
    from app.core.progress import reporting

    try:
        with reporting("seed-demo", unit="steps"):
            logins = run_with_state(demo.seed_demo)
    except ConfigurationError as exc:
        typer.secho(f"refused: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(demo.describe_logins(logins))


def _head(value: str | None) -> tuple[int, str] | None:
    """``<seq>:<hash>``, as an earlier report's ``head`` gives it."""
    if value is None:
        return None
    seq, _, digest = value.partition(":")
    if not (seq.isdecimal() and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise typer.BadParameter("give <seq>:<hash> as a report's head gives it, e.g. 42:3fa9...")
    return int(seq), digest


@cli.command("audit-verify")
def audit_verify(
    expect_head: Annotated[str | None, typer.Option(
        help="a head recorded earlier (<seq>:<hash>, a report's \"head\"): the chain must still reach it")] = None,
) -> None:
    """Seal pending audit events and verify the keyed chain; exit 1 when it is broken."""
    from sqlalchemy import func, select

    from app.core import progress
    from app.models.audit import AuditEvent
    from app.workflows.audit.verify import verify_chain

    expected = _head(expect_head)

    async def _verify(state):  # type: ignore[no-untyped-def]
        async with state.engine.connect() as conn:  # the walk is one statement: the bar moves at its end
            progress.set_total((await conn.execute(select(func.count()).select_from(AuditEvent))).scalar_one())
        result = await verify_chain(state.engine, state.clock.now(), expect_head=expected)
        progress.set_total(result.checked)
        progress.advance(result.checked)
        return result

    with progress.reporting("audit-verify", unit="events"):
        report = run_with_state(_verify)
    typer.echo(report.model_dump_json())
    if report.first_broken_id is not None:
        typer.secho(f"the audit chain is broken at event {report.first_broken_id}", fg="red", err=True)
    if report.expected_head_found is False:
        typer.secho(f"the audit chain does not reach the expected head {expect_head}", fg="red", err=True)
    if not report.ok:
        raise typer.Exit(1)


@cli.command("retention-sweep")
def retention_sweep(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be destroyed; change nothing")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="records per transaction")] = 200,
) -> None:
    """Destroy every record past its retention date, except those under legal hold (§6.5)."""
    from app.workflows import retention

    async def _sweep(state):  # type: ignore[no-untyped-def]
        async with state.sessionmaker() as session:
            return await retention.sweep(session, now=state.clock.now(), actor=None, dry_run=dry_run,
                                         batch_size=batch_size)

    from app.core.progress import reporting

    with reporting("retention-sweep", unit="records") if not dry_run else contextlib.nullcontext():
        result = run_with_state(_sweep)
    verb = "would destroy" if dry_run else "destroyed"
    typer.echo(f"sweep {result.sweep_id}: {verb} {result.count} record(s) past their retention date")
    for rid in result.ids:
        typer.echo(f"  {rid}")
    typer.echo(f"{verb} {result.package_count} access-request package(s) past their retention date")
    for rid in result.package_ids:
        typer.echo(f"  {rid}")


@cli.command("prune")
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count what would be deleted; change nothing")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="rows per transaction")] = 1000,
) -> None:
    """Delete what the service keeps only for a while once it is kept long enough (§6.5): finished
    webhook deliveries, expired idempotency keys, old login attempts, sessions long ended."""
    from app.workflows import housekeeping

    async def _prune(state):  # type: ignore[no-untyped-def]
        async with state.sessionmaker() as session:
            return await housekeeping.prune(session, now=state.clock.now(), settings=state.settings,
                                            dry_run=dry_run, batch_size=batch_size, rule=housekeeping.COMMAND)

    from app.core.progress import reporting

    with reporting("prune", unit="rows") if not dry_run else contextlib.nullcontext():
        counts = run_with_state(_prune)
    verb = "would delete" if dry_run else "deleted"
    typer.echo(f"{verb} {sum(counts.values())} row(s) kept long enough")
    for table, n in counts.items():
        typer.echo(f"  {table}: {n}")


@cli.command("rotate-key")
def rotate_key(
    new_key_stdin: Annotated[bool, typer.Option("--new-key-stdin", "--new-key",
                                                help="read the new base64 key from standard input")] = False,
    rewrap_only: Annotated[bool, typer.Option("--rewrap-only",
                                              help="re-wrap under the current key; add no key")] = False,
    retire: Annotated[bool, typer.Option("--retire/--keep-old",
                                         help="drop keys older than the previous one once unused")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="rows per transaction")] = 1000,
) -> None:
    """Make a new master key current and re-wrap every data key under it (§6.6).

    Content is never re-encrypted. The service keeps serving throughout. A value that does
    not open under its own row stops the command (exit code 1): it names the column and
    row, prints what was done so far, rolls nothing back and retires no key.
    """
    import json as _json

    from app.workflows import key_rotation

    settings = _settings()
    new_key = None
    try:
        if new_key_stdin:
            new_key = key_rotation.decode_key(sys.stdin.readline())
        if settings.keys_from_environment and not rewrap_only:
            key = new_key or key_rotation.generate_key()
            typer.echo(f"new master key (keep it secret): {key_rotation.encode_key(key)}")
            typer.echo(key_rotation.ENVIRONMENT_STEPS)
            return

        async def _rotate(state):  # type: ignore[no-untyped-def]
            await key_rotation.verify_master_keys(state)
            if rewrap_only:
                return await key_rotation.rewrap_all(state, batch_size=batch_size)
            return await key_rotation.rotate_key(state, new_key=new_key, retire=retire, batch_size=batch_size)

        from app.core.progress import reporting

        with reporting("rotate-key", unit="rows"):
            report = run_with_state(_rotate, settings)
    except ConfigurationError as exc:
        typer.secho(f"refused: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    except key_rotation.RotationStopped as exc:
        _rotation_stopped(exc)
        raise typer.Exit(1) from exc
    typer.echo(_json.dumps(report.as_dict(), indent=2))


def _rotation_stopped(exc: RotationStopped) -> None:
    """What a stopped rotation did and what the operator does next (§6.6): the column and row,
    never content. Committed batches stay under the new key; nothing is rolled back."""
    import json as _json

    report = exc.report
    assert report is not None
    typer.echo(_json.dumps(report.as_dict(), indent=2))  # standard output: the result so far
    values = sum(report.values_reencrypted.values())
    typer.secho(f"rotate-key stopped at {exc}.", fg="red", err=True)
    typer.echo(
        f"Done before it stopped, under master key id {report.current_key_id}: "
        f"{report.data_keys_rewrapped} data key(s) re-wrapped, {values} value(s) re-encrypted; "
        "nothing was rolled back and no key was retired. Every other stored value opens with the "
        f"keys listed ({', '.join(report.key_ids)}): keep all of them. Once that value opens again "
        "(restored from a backup, or its master key put back), run `kmm rotate-key --rewrap-only` "
        "to re-wrap the rest.",
        err=True,
    )


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli()


if __name__ == "__main__":
    main()
