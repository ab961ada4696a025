"""Who signs in to Airflow: the operator (Admin) and the API, which may only trigger and read the
two BitBuddies DAGs, and cannot pause or unpause them.

- Production (FAB, docker-compose): the role ``BitBuddiesAPI`` holds read on the two DAGs and create
  and read on their runs, nothing else: no edit on any DAG (pausing), no other DAG, no connections,
  variables, pools or configuration. Airflow's stock FAB check wants edit on a DAG to create its
  runs; the deployment's auth manager (``FAB_AUTH_MANAGER``, ops/airflow_auth.py) asks for create on
  the runs and read on the DAG instead.
- Embedded (SimpleAuthManager, ``make up`` and the native stacks): roles there are four and global,
  and the narrowest that may trigger (``user``) may pause every DAG. The API's user is a ``viewer``
  (reads, writes nothing, no connections or variables), and the embedded auth manager
  (``SIMPLE_AUTH_MANAGER``) lets it read and trigger the two BitBuddies DAGs and no other DAG.

tests/ops/test_airflow_roles.py runs both auth managers' checks on these rights,
tests/ops/test_init_deployment.py the compose init against a real metadata DB, and
tests/e2e/test_least_privilege.py the embedded stack's API user over HTTP.
"""

from __future__ import annotations

API_USER = "bitbuddies-api"
API_ROLE = "BitBuddiesAPI"
# The API's user's role in the embedded auth manager: read-only; SIMPLE_AUTH_MANAGER adds the trigger.
SIMPLE_AUTH_API_ROLE = "viewer"
API_DAGS = ("bitbuddies_generate", "bitbuddies_sticker_order")
# `[core] auth_manager` of the two profiles (import paths: ops/ is on the Python path of every
# Airflow process, natively and in the image).
SIMPLE_AUTH_MANAGER = "ops.airflow_auth.BitBuddiesSimpleAuthManager"
FAB_AUTH_MANAGER = "ops.airflow_auth.BitBuddiesFabAuthManager"


def api_role_permissions() -> list[tuple[str, str]]:
    """(FAB action, FAB resource) pairs of the API's role: exactly these, nothing more."""
    # FAB gives every custom role its home page whenever it syncs permissions (Website.can_read).
    permissions = [("can_read", "Website")]
    for dag_id in API_DAGS:
        permissions += [
            ("can_read", f"DAG:{dag_id}"),
            ("can_read", f"DAG Run:{dag_id}"),
            ("can_create", f"DAG Run:{dag_id}"),
        ]
    return permissions
