"""The application database: engine and sessions (the schema is ``include.migrations``).

Users, generations and the token ledger live here (not in Airflow's metadata DB). The API,
the CLI and Airflow task processes all write to it at the same time, so SQLite runs in WAL
mode with a generous busy timeout, and writers that read-then-write (the ledger) open their
transaction with ``BEGIN IMMEDIATE`` to take the write lock up front: a deferred SQLite
transaction that upgrades from read to write can fail with "database is locked" without
ever waiting for the busy timeout.

On Postgres (the production profile) the same code runs unchanged: ``write_lock`` is a plain
transaction and the ledger serialises a user's movements with ``SELECT ... FOR UPDATE`` on the
user row. ``create_database``/``drop_database`` manage whole databases for deployments and tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session, create_engine

from include.settings import get_settings

# Execution option that asks for a write-locking transaction (see the module docstring).
_IMMEDIATE_OPTION = "bitbuddies_begin_immediate"
# Connection execution options whose transactions start holding the write lock (SQLite).
WRITE_LOCK_OPTIONS = {_IMMEDIATE_OPTION: True}
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Re-entrant: a write_lock session opened inside another on the same thread still reaches SQLite
# (where it waits on the outer transaction as it always did) instead of deadlocking here.
_sqlite_writers = threading.RLock()


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling starts transactions lazily and cannot do
    # BEGIN IMMEDIATE, so take it over (SQLAlchemy's documented recipe).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@lru_cache
def get_engine() -> Engine:
    """The process-wide engine for ``get_settings().resolved_database_url``."""
    url = make_url(get_settings().resolved_database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def reset_engine() -> None:
    """Forget the cached engine (after the settings changed, e.g. in tests)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()


def is_sqlite() -> bool:
    return get_engine().dialect.name == "sqlite"


@contextmanager
def session_scope(*, write_lock: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on error.

    ``write_lock=True`` starts the transaction with the database write lock held (SQLite:
    BEGIN IMMEDIATE; on Postgres callers lock rows with SELECT ... FOR UPDATE instead).
    """
    # SQLite: this process's writers queue on a lock of its own first. Waiting inside SQLite's
    # busy handler is polling with sleeps of up to 100 ms, and a waiter can lose every round to
    # the next writer: a request waited a whole second behind 50 event inserts a second.
    queue = _sqlite_writers if write_lock and is_sqlite() else nullcontext()
    with queue, Session(get_engine(), expire_on_commit=False) as session:
        if write_lock:
            begin_write(session)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def begin_write(session: Session) -> None:
    """Start the session's transaction holding the write lock (must be its first statement)."""
    session.connection(execution_options=WRITE_LOCK_OPTIONS)


def _server_admin_url(url: str) -> tuple[URL, str]:
    """(URL of the server's maintenance database, name of the database ``url`` names)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a Postgres URL: {parsed.render_as_string(hide_password=True)}")
    return parsed.set(database="postgres"), parsed.database


def create_database(url: str) -> bool:
    """Create the Postgres database ``url`` names if it does not exist; True when created."""
    admin_url, name = _server_admin_url(url)
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                return False
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            return True
    finally:
        engine.dispose()


def drop_database(url: str) -> None:
    """Drop the Postgres database ``url`` names, disconnecting its remaining sessions first."""
    admin_url, name = _server_admin_url(url)
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()
