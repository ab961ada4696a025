"""Alembic's environment for the application database (see ``include/migrations/__init__.py``).

Runs with the connection ``migrate()`` passes in (already inside its locked transaction), or,
from the command line, with the engine of the configured database. Types are written into
revisions as plain SQLAlchemy types so a revision never imports the models it migrates.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import include.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from include.migrations import render_item

target_metadata = SQLModel.metadata


def configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=render_item,
        compare_type=True,
        # SQLite cannot ALTER most things: batch mode rewrites the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from include.db import get_engine

    with get_engine().connect() as connection:
        configure(connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported: run against a database")
run()
