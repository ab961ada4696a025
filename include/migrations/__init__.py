"""Schema migrations of the application database (Alembic), and ``migrate()`` that applies them.

The application tables (``include.models``) change only through a revision in ``versions/``;
``migrate()`` upgrades the database to the newest one. ``make up``, the compose ``init`` service,
the API at start-up, the CLI and the tests all call it, so every process sees one schema.

Several processes may start at once (the API and a CLI command, two test workers): the upgrade
runs in one transaction that first takes the database's write lock (SQLite: ``BEGIN IMMEDIATE``;
Postgres: a transaction-scoped advisory lock), so the second caller waits, then finds the
database at head and does nothing. Both backends run DDL inside the transaction, so a failed
upgrade leaves the previous schema intact.

A database made before migrations existed (tables created straight from the models) has no
``alembic_version`` table: ``migrate()`` stamps it with the baseline revision, whose schema it
has, and continues from there. To write a revision: ``python -m include.migrations revision
--autogenerate -m "what changes"`` (see the README).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, DateTime, Engine, String, TypeDecorator, inspect, text

HERE = Path(__file__).resolve().parent
# The first revision: the schema as create_all made it before migrations existed.
BASELINE = "0001"
# Any constant shared by every migrating process (Postgres advisory locks are keyed by integers).
_PG_LOCK_KEY = 0x6269_7462_7564  # "bitbud"


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the app database, without an ini file (env.py reads the URL
    from the settings when no connection is given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    # Revision files are named <rev>_<slug>.py and numbered 0001, 0002, ... (``--rev-id``).
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.attributes["connection"] = connection
    return cfg


def render_item(type_: str, obj, autogen_context):
    """Type decorators (sqlmodel's AutoString, the models' UTCDateTime) as the plain types they
    store, so revisions depend on SQLAlchemy only."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        impl = obj.impl
        if isinstance(impl, String):
            return f"sa.String(length={impl.length!r})" if impl.length else "sa.String()"
        if isinstance(impl, DateTime):
            return f"sa.DateTime(timezone={impl.timezone!r})"
    return False


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database ``engine`` points at to ``revision``, in one locked transaction."""
    from include.db import WRITE_LOCK_OPTIONS

    with engine.connect().execution_options(**WRITE_LOCK_OPTIONS) as conn, conn.begin():
        _lock(conn)
        tables = set(inspect(conn).get_table_names())
        if "alembic_version" not in tables and "user" in tables:
            command.stamp(config(conn), BASELINE)
        command.upgrade(config(conn), revision)


def migrate() -> None:
    """Upgrade the configured application database to the newest revision."""
    from include.db import get_engine

    upgrade(get_engine())
