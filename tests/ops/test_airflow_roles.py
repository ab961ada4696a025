"""The API's Airflow role, judged by Airflow's own FAB auth manager (the production profile's):
it may trigger and read the two BitBuddies DAGs and nothing else; it cannot pause another DAG."""

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
from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager

from ops.airflow_roles import API_DAGS, api_role_permissions


@pytest.fixture(scope="module")
def fab():
    # Only the permission checks are used: they read the user's (action, resource) pairs.
    return FabAuthManager.__new__(FabAuthManager)


@pytest.fixture(scope="module")
def api_user():
    return SimpleNamespace(perms=set(api_role_permissions()), roles=[])


@pytest.mark.parametrize("dag_id", API_DAGS)
def test_the_api_user_triggers_and_reads_its_dags_runs(fab, api_user, dag_id):
    dag = DagDetails(id=dag_id)
    assert fab.is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN, details=dag, user=api_user)
    assert fab.is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN, details=dag, user=api_user)
    assert fab.is_authorized_dag(method="GET", details=dag, user=api_user)
    # Deleting runs or touching task instances is not among its rights.
    assert not fab.is_authorized_dag(method="DELETE", access_entity=DagAccessEntity.RUN, details=dag, user=api_user)
    assert not fab.is_authorized_dag(method="PUT", access_entity=DagAccessEntity.TASK_INSTANCE, details=dag, user=api_user)


@pytest.mark.parametrize("dag_id", ["bitbuddies_reconcile_refunds", "bitbuddies_purge_expired_files", "someone_elses_dag"])
def test_the_api_user_cannot_pause_trigger_or_read_any_other_dag(fab, api_user, dag_id):
    dag = DagDetails(id=dag_id)
    assert not fab.is_authorized_dag(method="PUT", details=dag, user=api_user)  # PATCH is_paused
    assert not fab.is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN, details=dag, user=api_user)
    assert not fab.is_authorized_dag(method="GET", details=dag, user=api_user)


def test_the_api_user_reaches_no_connection_variable_pool_or_configuration(fab, api_user):
    for method in ("GET", "POST", "PUT", "DELETE"):
        assert not fab.is_authorized_connection(method=method, details=ConnectionDetails(conn_id="bitbuddies_models"), user=api_user)
        assert not fab.is_authorized_variable(method=method, details=VariableDetails(key="x"), user=api_user)
        assert not fab.is_authorized_pool(method=method, details=PoolDetails(name="model_local"), user=api_user)
    assert not fab.is_authorized_configuration(method="GET", details=ConfigurationDetails(section="core"), user=api_user)
    assert not fab.is_authorized_view(access_view=AccessView.PLUGINS, user=api_user)


def test_pausing_its_own_dags_comes_with_triggering_them(fab, api_user):
    """A trap worth knowing: Airflow 3.3's FAB check asks for edit on the DAG to create one of its runs,
    and edit is what pausing needs. The role cannot trigger without it."""
    dag = DagDetails(id=API_DAGS[0])
    without_edit = SimpleNamespace(perms={p for p in api_role_permissions() if p[0] != "can_edit"}, roles=[])
    assert not fab.is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN, details=dag, user=without_edit)
    assert fab.is_authorized_dag(method="PUT", details=dag, user=api_user)
