"""Airflow's SQLite settings (plugins/bitbuddies_airflow/sqlite.py): "now" to the millisecond."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from airflow.models.dagrun import DagRun
from sqlalchemy.dialects import sqlite

from bitbuddies_airflow import sqlite as airflow_sqlite


def test_now_is_rendered_to_the_millisecond_on_sqlite_only():
    query = sa.select(DagRun.run_id).where(DagRun.run_after <= sa.func.now())
    assert airflow_sqlite.NOW_WITH_FRACTION in str(query.compile(dialect=sqlite.dialect()))
    from sqlalchemy.dialects import postgresql

    assert "now()" in str(query.compile(dialect=postgresql.dialect()))


def test_a_run_queued_a_moment_ago_is_due_now_not_at_the_next_whole_second(tmp_path):
    """The scheduler's test (``DagRun.run_after <= func.now()``) on a real SQLite file, against a
    time stored as Airflow stores it (text, microseconds) 20 ms in the past, in the current second."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'airflow.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE dag_run (run_id TEXT, run_after TIMESTAMP)")
        while datetime.now(timezone.utc).microsecond > 800_000 or datetime.now(timezone.utc).microsecond < 50_000:
            time.sleep(0.01)  # stay inside one second: 20 ms ago and now share it
        run_after = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(milliseconds=20)
        connection.execute(sa.text("INSERT INTO dag_run VALUES ('r', :t)"), {"t": run_after.strftime("%Y-%m-%d %H:%M:%S.%f")})
        table = sa.table("dag_run", sa.column("run_id"), sa.column("run_after"))
        due = connection.execute(sa.select(table.c.run_id).where(table.c.run_after <= sa.func.now())).scalars().all()
        whole_second = connection.exec_driver_sql("SELECT run_after <= CURRENT_TIMESTAMP FROM dag_run").scalar_one()
    assert due == ["r"]
    assert whole_second == 0  # SQLite's CURRENT_TIMESTAMP: not due until the next whole second
