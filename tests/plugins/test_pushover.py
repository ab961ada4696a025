"""plugins/bitbuddies_airflow/pushover.py: alerts raised in Airflow use the ``bitbuddies_pushover`` connection."""

from __future__ import annotations

import importlib
import json

import pytest

import bitbuddies_airflow
from bitbuddies_airflow.pushover import pushover_from_connection
from include import alerts
from include.db import session_scope
from include.models import Generation
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)
from tests.fakes.pushover_server import FakePushover


@pytest.fixture(autouse=True)
def registered():
    """As in Airflow: importing the package registers the lookup (other tests reset it)."""
    importlib.reload(bitbuddies_airflow)
    yield
    alerts.use_pushover_config_source(None)


@pytest.fixture
def pushover():
    fake = FakePushover().start()
    yield fake
    fake.stop()


@pytest.fixture
def generation(fresh_app_db):
    user, _ = make_user("ops@example.com")
    with session_scope() as session:
        gen = Generation(user_id=user.id, prompt="wave", upload_path="uploads/x/photo.jpg")
        session.add(gen)
    return gen.id


def set_connection(monkeypatch, **conn) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BITBUDDIES_PUSHOVER", json.dumps({"conn_type": "generic", **conn}))


def test_importing_the_plugin_package_registers_the_connection_lookup():
    assert alerts._config_source is pushover_from_connection


def test_an_alert_goes_to_pushover_with_the_connection_keys(monkeypatch, pushover, generation):
    set_connection(monkeypatch, login=pushover.user, password=pushover.token, extra={"api_url": pushover.url})
    alert = alerts.generation_failed(generation, "animate", "boom", True, "http://airflow/dags/d/runs/r/tasks/animate")
    assert alert.channel == "pushover" and alert.delivery_error is None
    [sent] = pushover.messages
    assert sent["token"] == pushover.token and sent["user"] == pushover.user and generation in sent["message"]


def test_without_the_connection_the_settings_or_the_log_serve(monkeypatch, generation):
    monkeypatch.delenv("AIRFLOW_CONN_BITBUDDIES_PUSHOVER", raising=False)
    assert pushover_from_connection() is None
    assert alerts.generation_failed(generation, "animate", "boom", True, None).channel == "log"


def test_a_connection_missing_its_keys_is_not_used(monkeypatch):
    set_connection(monkeypatch, login="user-key-only")
    assert pushover_from_connection() is None
