"""Page tests: two independent browsers (cookie jars) on one app."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.deps import get_airflow_client
from api.main import app


@pytest.fixture
def browser_client(fresh_app_db, airflow_client):
    app.dependency_overrides[get_airflow_client] = lambda: airflow_client
    yield TestClient(app)
    app.dependency_overrides.clear()


@pytest.fixture
def other_browser(browser_client):
    return TestClient(app)
