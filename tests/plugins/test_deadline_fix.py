"""Clearing a run with a queued-at deadline: the stored interval is read as Airflow stores it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization

from bitbuddies_airflow import deadline_fix
from include.generations import GENERATE_DAG_ID
from include.settings import get_settings
from tests.dags.test_dag_integrity import DAGS


def stored_interval() -> dict:
    """The generation DAG's deadline interval exactly as the dag-processor writes it to the deadline_alert table."""
    dag = DagBag(dag_folder=str(DAGS / "generate_buddy.py")).dags[GENERATE_DAG_ID]
    (alert,) = DagSerialization.to_dict(dag)["dag"]["deadline"]
    return alert["interval"]


def test_the_generation_deadlines_stored_interval_is_read_in_seconds():
    interval = stored_interval()
    assert isinstance(interval, dict)  # what Airflow 3.3's own recalculation passes to timedelta(seconds=...)
    with pytest.raises(TypeError):
        timedelta(seconds=interval)
    assert deadline_fix.interval_seconds(interval) == get_settings().resolved_deadline_alert_minutes * 60
    assert deadline_fix.interval_seconds(90) == 90.0  # legacy rows: a bare number


class Rows:
    def __init__(self, rows):
        self.rows = rows

    def all(self):
        return self.rows


def test_a_cleared_run_moves_its_queued_at_deadline_by_the_stored_interval():
    queued = datetime(2026, 12, 1, 4, 0, tzinfo=timezone.utc)
    deadline = SimpleNamespace(id=1, deadline_time=queued)
    odd = SimpleNamespace(id=2, deadline_time=queued)
    session = SimpleNamespace(execute=lambda _: Rows([
        (deadline, SimpleNamespace(interval=stored_interval())),
        (odd, SimpleNamespace(interval={"__data__": {"callable": "x"}})),  # not a fixed interval: left alone
    ]))
    deadline_fix.recalculate_dagrun_queued_at_deadlines(SimpleNamespace(id=7, run_id="r"), queued, session)
    assert deadline.deadline_time == queued + timedelta(minutes=get_settings().resolved_deadline_alert_minutes)
    assert odd.deadline_time == queued


def test_the_plugin_puts_the_fix_in_place():
    import importlib

    from airflow.models import taskinstance

    import bitbuddies_plugin

    importlib.reload(bitbuddies_plugin)
    assert taskinstance._recalculate_dagrun_queued_at_deadlines is deadline_fix.recalculate_dagrun_queued_at_deadlines
