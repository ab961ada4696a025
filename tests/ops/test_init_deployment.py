"""docker-compose's ``init`` (``python -m ops.init_deployment``) against a real Airflow metadata DB on
Postgres, with the auth manager compose configures: the API's user exists in its role, and the role
holds exactly the rights of ops/airflow_roles.py (read and trigger the two BitBuddies DAGs; no edit,
so no pausing). The rights are read back from the database's own FAB tables, not through the code
under test. One run of the init takes minutes (Airflow's migrations, DAG serialization, a dozen CLI
calls), so this is the one test of it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from include.db import create_database, drop_database
from ops.airflow_auth import BitBuddiesFabAuthManager
from ops.airflow_roles import API_DAGS, API_ROLE, API_USER, api_role_permissions
from ops.stack import ROOT
from tests.services import postgres_server_url


COMPOSE_ENV = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["x-bitbuddies-env"]


@pytest.fixture
def deployment(tmp_path: Path):
    """The environment compose gives the init service, pointed at fresh databases on this machine."""
    server = postgres_server_url()
    tag = f"bb_{os.getpid()}_{uuid.uuid4().hex[:8]}_init"
    airflow_db, app_db = f"{server}/{tag}_airflow", f"{server}/{tag}_app"
    create_database(airflow_db)
    create_database(app_db)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BITBUDDIES_", "_AIRFLOW"))}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": COMPOSE_ENV["AIRFLOW__CORE__AUTH_MANAGER"],
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
            "BITBUDDIES_DATABASE_URL": app_db,
            "BITBUDDIES_VAR_DIR": str(tmp_path / "var"),
            "_AIRFLOW_ADMIN_USERNAME": "admin",
            "_AIRFLOW_ADMIN_PASSWORD": uuid.uuid4().hex,
            "_AIRFLOW_API_PASSWORD": uuid.uuid4().hex,
        }
    )
    yield SimpleNamespace(env=env, airflow_db=airflow_db)
    drop_database(airflow_db)
    drop_database(app_db)


def run(env: dict[str, str], *argv: str) -> None:
    proc = subprocess.run([sys.executable, *argv], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def role_rights(db_url: str, role: str) -> set[tuple[str, str]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT p.name, v.name FROM ab_role r"
                    " JOIN ab_permission_view_role pvr ON pvr.role_id = r.id"
                    " JOIN ab_permission_view pv ON pv.id = pvr.permission_view_id"
                    " JOIN ab_permission p ON p.id = pv.permission_id"
                    " JOIN ab_view_menu v ON v.id = pv.view_menu_id WHERE r.name = :role"
                ),
                {"role": role},
            ).all()
    finally:
        engine.dispose()
    return {(action, resource) for action, resource in rows}


def user_roles(db_url: str) -> dict[str, set[str]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT u.username, r.name FROM ab_user u JOIN ab_user_role ur ON ur.user_id = u.id JOIN ab_role r ON r.id = ur.role_id")
            ).all()
    finally:
        engine.dispose()
    users: dict[str, set[str]] = {}
    for username, role in rows:
        users.setdefault(username, set()).add(role)
    return users


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_compose_init_makes_the_api_user_who_triggers_but_cannot_pause(deployment):
    run(deployment.env, "-m", "ops.init_deployment")

    assert user_roles(deployment.airflow_db) == {"admin": {"Admin"}, API_USER: {API_ROLE}}
    rights = role_rights(deployment.airflow_db, API_ROLE)
    assert rights == set(api_role_permissions())
    assert not any(action == "can_edit" for action, _ in rights)

    # Judged by the auth manager compose runs, on the rights the database holds.
    fab = BitBuddiesFabAuthManager.__new__(BitBuddiesFabAuthManager)
    api_user = SimpleNamespace(perms=rights, roles=[])
    for dag_id in API_DAGS:
        dag = DagDetails(id=dag_id)
        assert fab.is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN, details=dag, user=api_user)
        assert fab.is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN, details=dag, user=api_user)
        assert not fab.is_authorized_dag(method="PUT", details=dag, user=api_user)
    assert not fab.is_authorized_dag(method="GET", details=DagDetails(id="bitbuddies_purge_expired_files"), user=api_user)


def test_an_init_over_an_older_set_up_takes_away_what_the_role_no_longer_holds(monkeypatch):
    """The role in the database as an older init left it (with edit on a DAG, i.e. pausing): the
    init adds what is missing and deletes what is beyond ops/airflow_roles.py, by Airflow's CLI."""
    import json

    from ops import init_deployment

    held = {("can_edit", f"DAG:{API_DAGS[0]}"), ("can_read", f"DAG:{API_DAGS[0]}"), ("can_read", "Website")}
    calls: list[tuple[str, ...]] = []

    def cli(*args: str) -> str:
        calls.append(args)
        if args[:2] == ("roles", "list") and "--permission" in args:
            rows = [{"name": API_ROLE, "resource": resource, "action": action} for action, resource in sorted(held)]
            rows.append({"name": "Admin", "resource": "DAGs", "action": "can_edit,can_read"})
            return "2026-01-01T00:00:00Z [warning  ] a warning Airflow logs to stdout\n" + json.dumps(rows)
        if args[:2] == ("roles", "list"):
            return json.dumps([{"name": "Admin"}, {"name": API_ROLE}])
        if args[:2] == ("users", "list"):
            return json.dumps([{"username": API_USER}])
        return ""

    monkeypatch.setattr(init_deployment, "airflow", cli)
    init_deployment.create_api_user()
    changes = [c for c in calls if c[:2] in {("roles", "add-perms"), ("roles", "del-perms")}]
    wanted = set(api_role_permissions())
    added = {(c[-1], r) for c in changes if c[1] == "add-perms" for r in c[4:-2]}
    deleted = {(c[-1], r) for c in changes if c[1] == "del-perms" for r in c[4:-2]}
    assert added == wanted - held and deleted == {("can_edit", f"DAG:{API_DAGS[0]}")}
    assert all(c[2] == API_ROLE for c in changes)
    assert not any(c[:2] in {("roles", "create"), ("users", "create")} for c in calls)  # both exist
