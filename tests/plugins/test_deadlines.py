"""plugins/bitbuddies_airflow/deadlines.py: a generation's run past its deadline alerts the operator once."""

from __future__ import annotations

import asyncio
import importlib
import json

import pytest
from sqlmodel import select

import bitbuddies_airflow
from bitbuddies_airflow.deadlines import alert_overdue_generation
from include import alerts
from include.db import session_scope
from include.models import Alert
from include.operator_generations import generation_id_for_run
from tests.api.support import fresh_app_db  # noqa: F401  (fixture)
from tests.fakes.pushover_server import FakePushover


@pytest.fixture
def pushover(monkeypatch):
    importlib.reload(bitbuddies_airflow)
    fake = FakePushover().start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_BITBUDDIES_PUSHOVER",
        json.dumps({"conn_type": "generic", "login": fake.user, "password": fake.token, "extra": {"api_url": fake.url}}),
    )
    yield fake
    fake.stop()
    alerts.use_pushover_config_source(None)


def context(run_id: str, conf: dict) -> dict:
    """What Airflow's deadline hands the callback (airflow/models/deadline.py get_simple_context)."""
    return {
        "dag_run": {"dag_id": "bitbuddies_generate", "dag_run_id": run_id, "conf": conf},
        "deadline": {"id": "d1", "deadline_time": "2026-12-01T04:00:00+00:00"},
    }


def test_an_overdue_api_run_alerts_once_per_generation(fresh_app_db, pushover):
    gid = "a" * 32
    assert asyncio.run(alert_overdue_generation(context=context(gid, {"generation_id": gid}))) == f"generation_overdue:{gid}"
    asyncio.run(alert_overdue_generation(context=context(gid, {"generation_id": gid})))
    with session_scope() as session:
        [alert] = session.exec(select(Alert)).all()
    assert alert.generation_id == gid and alert.url.endswith(f"/runs/{gid}")
    assert len(pushover.messages) == 1 and "deadline" in pushover.messages[0]["message"]


def test_an_overdue_form_run_names_the_generation_it_stored(fresh_app_db, pushover):
    key = asyncio.run(alert_overdue_generation(context=context("manual__1", {"generation_id": None})))
    assert key == f"generation_overdue:{generation_id_for_run('bitbuddies_generate', 'manual__1')}"


def test_the_generation_dag_declares_its_deadline():
    from airflow.dag_processing.dagbag import DagBag

    from include.settings import get_settings
    from tests.dags.test_dag_integrity import DAGS

    dag = DagBag(dag_folder=str(DAGS / "generate_buddy.py")).dags["bitbuddies_generate"]
    deadlines = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    [deadline] = deadlines
    assert deadline.interval.total_seconds() == get_settings().resolved_deadline_alert_minutes * 60
    assert deadline.callback.path == "bitbuddies_airflow.deadlines.alert_overdue_generation"
