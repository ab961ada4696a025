"""The auth managers Airflow runs with (``[core] auth_manager``): Airflow's own two, changed in one
point each so that the API's user may trigger and read the two BitBuddies DAGs without being able to
pause them.

Airflow 3.3 guards ``POST /api/v2/dags/{id}/dagRuns`` with ``is_authorized_dag(method="POST",
access_entity=RUN)`` and ``PATCH /api/v2/dags/{id}`` (``is_paused``) with ``is_authorized_dag(
method="PUT")``. Out of the box the first implies the second:

- FAB (production) asks for *edit on the DAG* before it lets anyone create one of its runs, and edit
  on the DAG is exactly what pausing needs. ``BitBuddiesFabAuthManager`` asks for what triggering is:
  create on the DAG's runs and read on the DAG. The role ``BitBuddiesAPI`` then holds no edit at all.
  Airflow's own roles (User, Op, Admin) hold both, so nothing changes for them.
- SimpleAuthManager (embedded) has four fixed, global roles; the narrowest that may trigger (``user``)
  also pauses every DAG. ``BitBuddiesSimpleAuthManager`` gives the API's user the role ``viewer``
  (read-only: no connections or variables, nothing written) and, on DAGs, exactly
  ``API_DAG_RIGHTS`` on the two BitBuddies DAGs and nothing on any other.

Both widen nothing for anyone else, and both fail closed: without them the API's user cannot
trigger at all (its role has no edit, resp. is ``viewer``) rather than getting more than it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager
from airflow.providers.fab.www.security.permissions import RESOURCE_DAG_RUN, resource_name

from ops.airflow_roles import API_DAGS, API_USER

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import ResourceMethod
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

# What the API's user may do on each of API_DAGS: (method, access entity) pairs. Read the DAG and its
# runs, create runs. Not PUT on the DAG (pause, unpause), not DELETE, no task instances.
API_DAG_RIGHTS = frozenset({("GET", None), ("GET", DagAccessEntity.RUN), ("POST", DagAccessEntity.RUN)})


class BitBuddiesSimpleAuthManager(SimpleAuthManager):
    """SimpleAuthManager whose DAG checks for the API's user are ``API_DAG_RIGHTS`` on ``API_DAGS``."""

    def is_authorized_dag(
        self,
        *,
        method: ResourceMethod,
        user: SimpleAuthManagerUser,
        access_entity: DagAccessEntity | None = None,
        details: DagDetails | None = None,
    ) -> bool:
        if user.get_name() == API_USER:
            return bool(details and details.id in API_DAGS) and (method, access_entity) in API_DAG_RIGHTS
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)


class BitBuddiesFabAuthManager(FabAuthManager):
    """FAB auth manager where creating a DAG's run needs create on its runs and read on the DAG, not
    edit on the DAG (which is what pausing it needs).

    Keep "FabAuthManager" in the name: Airflow looks for it in ``[core] auth_manager`` to sync the
    per-DAG permissions when it parses DAGs (dag_processing/collection.py) and in ``db clean``.
    """

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None) -> bool:
        if method == "POST" and access_entity == DagAccessEntity.RUN and details and details.id:
            may_create_runs = self._is_authorized(
                method="POST", resource_type=resource_name(details.id, RESOURCE_DAG_RUN), user=user
            ) or super().is_authorized_dag(method="POST", access_entity=access_entity, user=user)  # "DAG Runs", all DAGs
            return may_create_runs and super().is_authorized_dag(method="GET", details=details, user=user)
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
