"""The API's Airflow rights, judged by the auth managers the two profiles run (ops/airflow_auth.py):
it may trigger and read the two BitBuddies DAGs and nothing else; it cannot pause any DAG, its own
included. Stock Airflow is checked too, to show what the subclasses are for."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.api_fastapi.auth.managers.models.resource_details import (
    AccessView,
    ConfigurationDetails,
    ConnectionDetails,
    DagAccessEntity,
    DagDetails,
    PoolDetails,
    VariableDetails,
)
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager

from ops.airflow_auth import BitBuddiesFabAuthManager, BitBuddiesSimpleAuthManager
from ops.airflow_roles import API_DAGS, API_USER, FAB_AUTH_MANAGER, SIMPLE_AUTH_API_ROLE, SIMPLE_AUTH_MANAGER, api_role_permissions

OTHER_DAGS = ["bitbuddies_reconcile_refunds", "bitbuddies_purge_expired_files", "someone_elses_dag"]
RUN = DagAccessEntity.RUN


def fab_user(perms) -> SimpleNamespace:
    # FAB's checks read only the user's (action, resource) pairs.
    return SimpleNamespace(perms=set(perms), roles=[])


@pytest.fixture(scope="module")
def fab():
    return BitBuddiesFabAuthManager.__new__(BitBuddiesFabAuthManager)


@pytest.fixture(scope="module")
def simple():
    return BitBuddiesSimpleAuthManager.__new__(BitBuddiesSimpleAuthManager)


@pytest.fixture(scope="module")
def fab_api_user():
    return fab_user(api_role_permissions())


@pytest.fixture(scope="module")
def simple_api_user():
    return SimpleAuthManagerUser(username=API_USER, role=SIMPLE_AUTH_API_ROLE)


@pytest.fixture(params=["fab", "simple"])
def manager_and_user(request, fab, simple, fab_api_user, simple_api_user):
    return (fab, fab_api_user) if request.param == "fab" else (simple, simple_api_user)


def test_the_profiles_are_configured_with_these_auth_managers(tmp_path):
    import importlib

    import yaml

    from ops.stack import ROOT, StackConfig, environment

    for path, cls in [(FAB_AUTH_MANAGER, BitBuddiesFabAuthManager), (SIMPLE_AUTH_MANAGER, BitBuddiesSimpleAuthManager)]:
        module, name = path.rsplit(".", 1)
        assert getattr(importlib.import_module(module), name) is cls
    assert environment(StackConfig(var_dir=tmp_path))["AIRFLOW__CORE__AUTH_MANAGER"] == SIMPLE_AUTH_MANAGER
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    assert compose["x-bitbuddies-env"]["AIRFLOW__CORE__AUTH_MANAGER"] == FAB_AUTH_MANAGER


@pytest.mark.parametrize("dag_id", API_DAGS)
def test_the_api_user_triggers_and_reads_its_dags_but_cannot_pause_them(manager_and_user, dag_id):
    manager, user = manager_and_user
    dag = DagDetails(id=dag_id)
    assert manager.is_authorized_dag(method="POST", access_entity=RUN, details=dag, user=user)
    assert manager.is_authorized_dag(method="GET", access_entity=RUN, details=dag, user=user)
    assert manager.is_authorized_dag(method="GET", details=dag, user=user)
    assert not manager.is_authorized_dag(method="PUT", details=dag, user=user)  # PATCH is_paused
    assert not manager.is_authorized_dag(method="DELETE", details=dag, user=user)
    assert not manager.is_authorized_dag(method="DELETE", access_entity=RUN, details=dag, user=user)
    assert not manager.is_authorized_dag(method="PUT", access_entity=RUN, details=dag, user=user)
    assert not manager.is_authorized_dag(method="PUT", access_entity=DagAccessEntity.TASK_INSTANCE, details=dag, user=user)


@pytest.mark.parametrize("dag_id", OTHER_DAGS)
def test_the_api_user_cannot_pause_trigger_or_read_any_other_dag(manager_and_user, dag_id):
    manager, user = manager_and_user
    dag = DagDetails(id=dag_id)
    assert not manager.is_authorized_dag(method="PUT", details=dag, user=user)
    assert not manager.is_authorized_dag(method="POST", access_entity=RUN, details=dag, user=user)
    assert not manager.is_authorized_dag(method="GET", details=dag, user=user)


def test_the_api_user_reaches_no_connection_variable_or_plugin_and_changes_no_pool(manager_and_user):
    manager, user = manager_and_user
    for method in ("GET", "POST", "PUT", "DELETE"):
        assert not manager.is_authorized_connection(method=method, details=ConnectionDetails(conn_id="bitbuddies_models"), user=user)
        assert not manager.is_authorized_variable(method=method, details=VariableDetails(key="x"), user=user)
    for method in ("POST", "PUT", "DELETE"):
        assert not manager.is_authorized_pool(method=method, details=PoolDetails(name="model_local"), user=user)
        assert not manager.is_authorized_configuration(method=method, details=ConfigurationDetails(section="core"), user=user)


def test_the_fab_role_reads_no_pool_configuration_or_plugin(fab, fab_api_user):
    assert not fab.is_authorized_pool(method="GET", details=PoolDetails(name="model_local"), user=fab_api_user)
    assert not fab.is_authorized_configuration(method="GET", details=ConfigurationDetails(section="core"), user=fab_api_user)
    assert not fab.is_authorized_view(access_view=AccessView.PLUGINS, user=fab_api_user)


def test_airflows_own_roles_keep_their_rights(fab, simple):
    """Nothing changes for anyone else: FAB's User role triggers and pauses, as do SimpleAuthManager's
    `user` and `admin`; `viewer` (another user than the API's) does neither."""
    dag = DagDetails(id="someone_elses_dag")
    fab_role_user = fab_user({("can_read", "DAGs"), ("can_edit", "DAGs"), ("can_create", "DAG Runs"), ("can_read", "DAG Runs")})
    for manager, user in [
        (fab, fab_role_user),
        (simple, SimpleAuthManagerUser(username="alice", role="user")),
        (simple, SimpleAuthManagerUser(username="admin", role="admin")),
    ]:
        assert manager.is_authorized_dag(method="POST", access_entity=RUN, details=dag, user=user)
        assert manager.is_authorized_dag(method="PUT", details=dag, user=user)
    viewer = SimpleAuthManagerUser(username="bob", role="viewer")
    assert simple.is_authorized_dag(method="GET", details=dag, user=viewer)
    assert not simple.is_authorized_dag(method="POST", access_entity=RUN, details=dag, user=viewer)
    assert not simple.is_authorized_dag(method="PUT", details=dag, user=viewer)
    # Creating runs alone is not reading the DAG: no trigger without read.
    assert not fab.is_authorized_dag(method="POST", access_entity=RUN, details=dag, user=fab_user({("can_create", "DAG Runs")}))


def test_stock_airflow_would_let_the_api_user_pause_or_not_trigger_at_all():
    """Why ops/airflow_auth.py exists: stock FAB refuses the role a trigger (it wants edit on the DAG,
    which would allow pausing); stock SimpleAuthManager's narrowest role that triggers pauses too."""
    dag = DagDetails(id=API_DAGS[0])
    stock_fab = FabAuthManager.__new__(FabAuthManager)
    assert not stock_fab.is_authorized_dag(method="POST", access_entity=RUN, details=dag, user=fab_user(api_role_permissions()))
    with_edit = fab_user(api_role_permissions() + [("can_edit", f"DAG:{API_DAGS[0]}")])
    assert stock_fab.is_authorized_dag(method="PUT", details=dag, user=with_edit)
    stock_simple = SimpleAuthManager.__new__(SimpleAuthManager)
    user_role = SimpleAuthManagerUser(username=API_USER, role="user")
    assert stock_simple.is_authorized_dag(method="POST", access_entity=RUN, details=dag, user=user_role)
    assert stock_simple.is_authorized_dag(method="PUT", details=dag, user=user_role)
