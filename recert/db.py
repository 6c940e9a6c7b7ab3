"""Engines, sessions and migrations for SQLite (embedded default) and PostgreSQL.

What can go wrong before any query runs (an unsupported or malformed URL, a SQLite file
in a missing folder, a server that does not answer, a database `recert init` never set
up) is a `DatabaseError` with one line that says what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session

SUPPORTED = "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"


class DatabaseError(Exception):
    """The database cannot be used; the message is one line. Exit code 1 unless config."""

    exit_code = 1


class BadDatabaseUrl(DatabaseError):
    """database.url (or RECERT_DATABASE_URL) is wrong: a config error."""

    exit_code = 2


def label(url: URL | str) -> str:
    """The URL as it may be shown: never with its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a URL)"


def make_engine(url: str) -> Engine:
    """An engine for a supported URL; SQL errors never carry the statement's parameters."""
    parsed = _supported(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, hide_parameters=True)


def _supported(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise BadDatabaseUrl(f"database URL {url[:60]!r} is not a URL: use {SUPPORTED}") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "postgresql" and parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")  # the driver Recert ships
    if backend != "sqlite" or driver != "pysqlite":
        raise BadDatabaseUrl(
            f"database URL {label(parsed)}: {parsed.drivername} is not supported: use {SUPPORTED}"
        )
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).parent
        if not folder.is_dir():
            raise BadDatabaseUrl(
                f"database URL {label(parsed)}: folder {folder} does not exist; create it first"
            )
    return parsed


@contextmanager
def reachable(engine: Engine) -> Iterator[None]:
    """Turn a database that does not answer into one line naming it."""
    try:
        yield
    except OperationalError as error:
        raise DatabaseError(
            f"cannot reach database {label(engine.url)}: {first_line(error)}"
        ) from None


def first_line(error: OperationalError) -> str:
    """The driver's own message, without SQLAlchemy's statement and help link."""
    return str(error.orig or error).strip().splitlines()[0]


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commits on success, rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return config


def upgrade(engine: Engine) -> str:
    """Bring the database to the newest migration; returns the head revision."""
    config = _alembic_config()
    with reachable(engine), engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return head_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with reachable(engine), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class SchemaOutOfDate(DatabaseError):
    pass


def require_current(engine: Engine) -> Engine:
    """Workers and read commands never migrate (several could race): `recert init` does."""
    current = current_revision(engine)
    if current is None:
        raise SchemaOutOfDate(
            f"database {label(engine.url)} has no Recert schema: run `recert init` first"
        )
    if current != head_revision():
        raise SchemaOutOfDate(
            f"database {label(engine.url)} is at schema {current}, not {head_revision()}: "
            "run `recert init` first"
        )
    return engine
