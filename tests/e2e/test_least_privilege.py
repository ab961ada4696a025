"""On the running stack: the API signs in to Airflow as its own user, not as the admin, and that
user cannot read connections, change pools or read the configuration (SimpleAuthManager role
``user``: the narrowest that may trigger; the production FAB role is checked in
tests/ops/test_airflow_roles.py)."""

from __future__ import annotations

import httpx
import pytest

from ops.airflow_roles import API_USER
from ops.stack import api_airflow_password, environment

pytestmark = pytest.mark.e2e


def test_the_apis_airflow_user_is_not_the_admin_and_reaches_no_secrets(stack):
    env = environment(stack.cfg)
    assert env["BITBUDDIES_AIRFLOW_USERNAME"] == API_USER != "admin"
    base = stack.cfg.airflow_url
    login = httpx.post(f"{base}/auth/token", json={"username": API_USER, "password": api_airflow_password(stack.cfg)}, timeout=30)
    assert login.status_code == 201, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    with httpx.Client(base_url=f"{base}/api/v2", headers=headers, timeout=30) as airflow:
        assert airflow.get("/dags/bitbuddies_generate").status_code == 200
        assert airflow.get("/connections").status_code == 403
        assert airflow.get("/variables").status_code == 403
        assert airflow.patch("/pools/model_local", json={"slots": 100}).status_code == 403
        assert airflow.get("/config").status_code == 403
