"""On the running stack: the API signs in to Airflow as its own user, not as the admin. That user
triggers and reads the two BitBuddies DAGs, cannot pause or unpause them (nor read or trigger any
other DAG), and reaches no connection, variable, pool or configuration (ops/airflow_roles.py; the
production FAB role is judged in tests/ops/test_airflow_roles.py and tests/ops/test_init_deployment.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ops.airflow_roles import API_DAGS, API_USER
from ops.stack import api_airflow_password, environment

pytestmark = pytest.mark.e2e

# Valid params for each DAG; the runs made with them never start (see below).
CONF = {
    "bitbuddies_generate": {"generation_id": "0" * 32, "user_id": 1, "upload_path": "uploads/none/photo.png"},
    "bitbuddies_sticker_order": {"order_id": "0" * 32},
}


@pytest.fixture
def as_api_user(stack):
    env = environment(stack.cfg)
    assert env["BITBUDDIES_AIRFLOW_USERNAME"] == API_USER != "admin"
    login = httpx.post(
        f"{stack.cfg.airflow_url}/auth/token",
        json={"username": API_USER, "password": api_airflow_password(stack.cfg)},
        timeout=30,
    )
    assert login.status_code == 201, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    with httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def as_admin(stack):
    headers = {"Authorization": f"Bearer {stack.airflow_token()}"}
    with httpx.Client(base_url=f"{stack.cfg.airflow_url}/api/v2", headers=headers, timeout=30) as client:
        yield client


def test_the_apis_airflow_user_triggers_and_reads_its_dags_but_cannot_pause_them(as_api_user, as_admin):
    # A run that starts tomorrow: triggered for real, but it never runs (the admin deletes it).
    run_after = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for dag_id in API_DAGS:
        run_id = f"least-privilege-{uuid.uuid4().hex}"
        trigger = as_api_user.post(
            f"/dags/{dag_id}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "run_after": run_after, "conf": CONF[dag_id]}
        )
        try:
            assert trigger.status_code == 200, trigger.text
            run = as_api_user.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            assert run.status_code == 200 and run.json()["state"] == "queued", run.text
            assert as_api_user.get(f"/dags/{dag_id}").json()["is_paused"] is False
            for paused in (True, False):
                refused = as_api_user.patch(f"/dags/{dag_id}", json={"is_paused": paused})
                assert refused.status_code == 403, refused.text
            assert as_api_user.delete(f"/dags/{dag_id}/dagRuns/{run_id}").status_code == 403
        finally:
            as_admin.delete(f"/dags/{dag_id}/dagRuns/{run_id}")
        assert as_admin.get(f"/dags/{dag_id}").json()["is_paused"] is False
    # Pausing DAGs in bulk is refused before any DAG is looked at (the pattern matches none, so a
    # failure here cannot pause the session's stack).
    bulk = as_api_user.patch("/dags", params={"dag_id_pattern": "no_such_dag_%"}, json={"is_paused": True})
    assert bulk.status_code == 403, bulk.text


def test_the_apis_airflow_user_reaches_no_other_dag_and_no_secrets(as_api_user):
    other = "bitbuddies_purge_expired_files"
    assert as_api_user.get(f"/dags/{other}").status_code == 403
    assert as_api_user.patch(f"/dags/{other}", json={"is_paused": True}).status_code == 403
    trigger = as_api_user.post(f"/dags/{other}/dagRuns", json={"logical_date": None, "conf": {}})
    assert trigger.status_code == 403, trigger.text
    assert as_api_user.get("/connections").status_code == 403
    assert as_api_user.get("/variables").status_code == 403
    assert as_api_user.patch("/pools/model_local", json={"slots": 100}).status_code == 403
    assert as_api_user.get("/config").status_code == 403
