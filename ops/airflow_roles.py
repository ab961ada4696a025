"""Who signs in to Airflow: the operator (Admin) and the API, which may only trigger and read the
two BitBuddies DAGs.

- Production (FAB auth manager, docker-compose): the role ``BitBuddiesAPI`` holds read and edit on
  the two DAGs and create and read on their runs, nothing else: no other DAG, no connections,
  variables, pools or configuration. Airflow 3.3's FAB check asks for *edit on the DAG* to create
  one of its runs, and editing a DAG is also what pausing it needs: the API's user can pause those
  two DAGs, and no other (``tests/ops/test_airflow_roles.py`` runs FAB's own checks on the role).
- Embedded (SimpleAuthManager, ``make up`` and the native stacks): roles are global there; ``USER``
  is the narrowest that may trigger a run (it also reaches every DAG, and pauses them); ``VIEWER``
  cannot trigger. Connections, pools, variables and configuration stay out of its reach.
"""

from __future__ import annotations

API_USER = "bitbuddies-api"
API_ROLE = "BitBuddiesAPI"
# The embedded auth manager's narrowest role that may trigger DAG runs.
SIMPLE_AUTH_API_ROLE = "user"
API_DAGS = ("bitbuddies_generate", "bitbuddies_sticker_order")


def api_role_permissions() -> list[tuple[str, str]]:
    """(FAB action, FAB resource) pairs of the API's role."""
    permissions = []
    for dag_id in API_DAGS:
        permissions += [
            ("can_read", f"DAG:{dag_id}"),
            ("can_edit", f"DAG:{dag_id}"),  # Airflow's FAB check: creating a run needs edit on its DAG
            ("can_read", f"DAG Run:{dag_id}"),
            ("can_create", f"DAG Run:{dag_id}"),
        ]
    return permissions
