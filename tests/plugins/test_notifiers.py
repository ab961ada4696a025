"""plugins/bitbuddies_airflow/notifiers.py: the DAGs' failure notifiers raise each alert once, through Pushover."""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import pytest
from sqlmodel import select

import bitbuddies_airflow
from bitbuddies_airflow.notifiers import GenerationFailedNotifier, RunFailedNotifier
from include import alerts, ledger
from include.db import session_scope
from include.models import Alert, Generation
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)
from tests.fakes.pushover_server import FakePushover


@pytest.fixture(autouse=True)
def registered():
    importlib.reload(bitbuddies_airflow)
    yield
    alerts.use_pushover_config_source(None)


@pytest.fixture
def pushover(monkeypatch):
    fake = FakePushover().start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_BITBUDDIES_PUSHOVER",
        json.dumps({"conn_type": "generic", "login": fake.user, "password": fake.token, "extra": {"api_url": fake.url}}),
    )
    yield fake
    fake.stop()


def dag_callback_context(dag_id: str, run_id: str, conf: dict | None = None, reason: str = "task_failure") -> dict:
    """What Airflow hands a DAG's failure callback (in the dag-processor)."""
    run = SimpleNamespace(dag_id=dag_id, run_id=run_id, conf=conf or {})
    return {"dag_run": run, "reason": reason, "params": conf or {},
            "ti": SimpleNamespace(task_id="render_sheet", log_url="http://airflow/log")}


def all_alerts() -> list[Alert]:
    with session_scope() as session:
        return list(session.exec(select(Alert)).all())


def test_a_failed_generation_is_refunded_and_alerted_once(fresh_app_db, pushover):
    user, _ = make_user("ops@example.com", tokens=1)
    generation = ledger.create_paid_generation(Generation(user_id=user.id, prompt="wave", upload_path="uploads/x/photo.jpg"))
    notifier = GenerationFailedNotifier()
    context = dag_callback_context("bitbuddies_generate", generation.id, {"generation_id": generation.id})
    notifier(context)
    notifier(context)  # a repeat (or the refund task, the reconciliation DAG) changes nothing
    assert ledger.balance(user.id) == 1
    [alert] = all_alerts()
    assert alert.key == f"generation_failed:{generation.id}" and alert.channel == "pushover" and alert.delivered_at
    assert len(pushover.messages) == 1 and generation.id in pushover.messages[0]["message"]


def test_a_form_run_that_stored_nothing_is_alerted_as_a_run(fresh_app_db, pushover):
    context = dag_callback_context("bitbuddies_generate", "manual__refused", {"generation_id": None, "email": "x@example.com"})
    GenerationFailedNotifier()(context)
    [alert] = all_alerts()
    assert alert.key == "dag_run_failed:bitbuddies_generate:manual__refused" and len(pushover.messages) == 1


def test_another_dags_failed_run_is_alerted_once_per_run(fresh_app_db, pushover):
    notifier = RunFailedNotifier()
    notifier(dag_callback_context("bitbuddies_sticker_order", "run-1"))
    notifier(dag_callback_context("bitbuddies_sticker_order", "run-1"))
    notifier(dag_callback_context("bitbuddies_sticker_order", "run-2"))
    assert sorted(a.key for a in all_alerts()) == [
        "dag_run_failed:bitbuddies_sticker_order:run-1", "dag_run_failed:bitbuddies_sticker_order:run-2",
    ]
    assert len(pushover.messages) == 2
    assert "render_sheet" in pushover.messages[0]["title"]


def test_an_alert_pushover_missed_is_redelivered_once(fresh_app_db, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_BITBUDDIES_PUSHOVER",
        json.dumps({"conn_type": "generic", "login": "u" * 30, "password": "a" * 30, "extra": {"api_url": "http://127.0.0.1:9"}}),
    )
    RunFailedNotifier()(dag_callback_context("bitbuddies_purge_expired_files", "run-1"))
    [alert] = all_alerts()
    assert alert.delivered_at is None and alert.delivery_error
    fake = FakePushover().start()
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_BITBUDDIES_PUSHOVER",
            json.dumps({"conn_type": "generic", "login": fake.user, "password": fake.token, "extra": {"api_url": fake.url}}),
        )
        from datetime import timedelta

        assert [a.key for a in alerts.redeliver_undelivered(older_than=timedelta(0))] == [alert.key]
        assert alerts.redeliver_undelivered(older_than=timedelta(0)) == []
        assert len(fake.messages) == 1
    finally:
        fake.stop()


def test_every_dag_has_its_failure_notifier():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import DAGS

    for dag_id, dag in DagBag(dag_folder=str(DAGS)).dags.items():
        callbacks = dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
        expected = GenerationFailedNotifier if dag_id == "bitbuddies_generate" else RunFailedNotifier
        assert any(isinstance(c, expected) for c in callbacks), dag_id
