"""The app database's migrations (include/migrations): head is exactly what the models declare.

An empty SQLite and an empty Postgres are upgraded to head and compared with the models by
Alembic's autogenerate comparison: any difference means a model changed without a revision
(or a revision that does not match). The revisions form one line (one head), so two branches
that each add a revision fail here until one is rebased onto the other.
"""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

import include.models  # noqa: F401  (registers the tables)
from include.db import create_database, drop_database
from include.migrations import BASELINE, config, render_item, upgrade
from tests.services import postgres_server_url


def diff_against_models(engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "render_item": render_item})
        return compare_metadata(context, SQLModel.metadata)


def version_of(engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str:
    return ScriptDirectory.from_config(config()).get_current_head()


@pytest.fixture
def sqlite_engine(tmp_path):
    from include.db import _configure_sqlite

    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}", connect_args={"check_same_thread": False, "timeout": 30})
    _configure_sqlite(engine)  # the app's own connection set-up (WAL, foreign keys, BEGIN IMMEDIATE)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine():
    url = f"{postgres_server_url()}/bb_{os.getpid()}_{uuid.uuid4().hex[:8]}_migrations"
    create_database(url)
    engine = create_engine(url)
    yield engine
    engine.dispose()
    drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request):
    return request.getfixturevalue(f"{request.param}_engine")


def test_the_revisions_form_one_line():
    script = ScriptDirectory.from_config(config())
    assert len(script.get_heads()) == 1, f"several heads {script.get_heads()}: rebase a revision onto the other"
    assert [r.revision for r in script.walk_revisions()][-1] == BASELINE


def test_head_on_an_empty_database_is_what_the_models_declare(empty_db):
    assert inspect(empty_db).get_table_names() == []
    upgrade(empty_db)
    assert version_of(empty_db) == head()
    assert diff_against_models(empty_db) == []
    # Idempotent: a second run (every start-up runs it) changes nothing.
    upgrade(empty_db)
    assert version_of(empty_db) == head()


def test_downgrade_to_base_and_back(empty_db):
    upgrade(empty_db)
    with empty_db.begin() as conn:
        command.downgrade(config(conn), "base")
    assert set(inspect(empty_db).get_table_names()) <= {"alembic_version"}
    upgrade(empty_db)
    assert diff_against_models(empty_db) == []


def test_a_database_made_before_migrations_is_adopted(sqlite_engine):
    # What create_all left behind: the baseline schema without an alembic_version table.
    upgrade(sqlite_engine, BASELINE)
    with sqlite_engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    upgrade(sqlite_engine)
    assert version_of(sqlite_engine) == head()
    assert diff_against_models(sqlite_engine) == []


def test_concurrent_upgrades_of_one_empty_database_both_succeed(sqlite_engine):
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(sqlite_engine)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert version_of(sqlite_engine) == head()
    assert diff_against_models(sqlite_engine) == []
