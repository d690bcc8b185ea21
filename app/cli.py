"""The `kmm` command: serve, migrate, create-user, seed-demo, and operations."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from app.core.config import ConfigurationError, Settings, get_settings

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
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
) -> None:
    """Migrate, then serve with uvicorn (uvloop and httptools)."""
    import uvicorn

    settings = _settings()
    if migrate_first:
        _migrate(settings)
    # Make sure generated local secrets exist before workers start (they all read one file).
    _ = settings.signing_key, settings.keyring
    uvicorn.run(
        "app.asgi:app",
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        server_header=False,
        proxy_headers=True,
        log_config=None,
    )


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
    from pydantic import ValidationError
    from sqlmodel import select

    from app.core.errors import Problem
    from app.models.accounts import User, UserCreate
    from app.workflows import accounts

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
            return await accounts.create_user(session, data=data, passwords=state.passwords,
                                              now=state.clock.now(), actor=None)

    try:
        user = run_with_state(_create)
    except ValidationError as exc:
        # The messages name the field and the rule, never the value given.
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        typer.secho(f"invalid input: {problems}", fg="red", err=True)
        raise typer.Exit(2) from exc
    except Problem as exc:
        typer.secho(f"refused: {exc.detail}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"created {user.role} {user.email} ({user.id})")


@cli.command("seed-demo")
def seed_demo() -> None:
    """Seed a demo organisation (idempotent) and print the logins."""
    from app import seed

    logins = run_with_state(seed.seed_demo)
    typer.echo(seed.describe_logins(logins))


@cli.command("audit-verify")
def audit_verify() -> None:
    """Seal pending audit events and verify the hash chain; exit 1 when it is broken."""
    from app.workflows.audit_chain import verify_chain

    report = run_with_state(lambda state: verify_chain(state.engine, state.clock.now()))
    typer.echo(report.model_dump_json())
    if not report.ok:
        typer.secho(f"the audit chain is broken at event {report.first_broken_id}", fg="red", err=True)
        raise typer.Exit(1)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli()


if __name__ == "__main__":
    main()
