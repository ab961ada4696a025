"""Fixtures for the API tests: a fresh app DB, a fake Airflow, a TestClient and users."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.deps import get_airflow_client
from api.main import app
from include.airflow_client import AirflowClient
from tests.api.fake_airflow import FakeAirflow
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture re-export)


@pytest.fixture
def fake_airflow():
    fake = FakeAirflow().start()
    yield fake
    fake.stop()


@pytest.fixture
def airflow_client(fake_airflow):
    with AirflowClient(base_url=fake_airflow.url, username="admin", password="admin", timeout=5) as client:
        yield client


@pytest.fixture
def client(fresh_app_db, airflow_client):
    """A TestClient without the lifespan (no background loop); Airflow is the fake."""
    app.dependency_overrides[get_airflow_client] = lambda: airflow_client
    with_client = TestClient(app)
    yield with_client
    app.dependency_overrides.clear()


@pytest.fixture
def user_with_tokens(fresh_app_db):
    return make_user("ada@example.com", tokens=3)


@pytest.fixture
def generous_limits(fresh_app_db, monkeypatch):
    """Per-user limits out of the way, for tests that send many requests as one user on purpose."""
    from include.settings import get_settings
    from ops.stack import LOAD_TEST_LIMITS

    for name, value in LOAD_TEST_LIMITS.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
