"""Operator alerts from Airflow go to Pushover with the Airflow connection ``bitbuddies_pushover``.

The connection's password is the Pushover application's API token, its login the operator's user
(or group) key; an optional extra ``{"api_url": ...}`` points at another Pushover API (a local
fake in tests). Importing this package (``bitbuddies_airflow``, which every task, callback and the
reconciliation DAG import) registers :func:`pushover_from_connection` with include/alerts.py, so
alerts raised in workers, the dag-processor's failure callbacks and the triggerer use it. Without
the connection, include/alerts.py falls back to its settings, then to the log and the alerts table.
"""

from __future__ import annotations

import logging

from include.alerts import PushoverConfig, use_pushover_config_source

log = logging.getLogger(__name__)

CONN_ID = "bitbuddies_pushover"


def pushover_from_connection() -> PushoverConfig | None:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(CONN_ID)
    except AirflowNotFoundException:
        return None
    if not conn.password or not conn.login:
        log.warning("connection %s needs the app token as password and the user key as login", CONN_ID)
        return None
    api_url = (conn.extra_dejson or {}).get("api_url")
    return PushoverConfig(token=conn.password, user=conn.login, **({"api_url": api_url} if api_url else {}))


def register() -> None:
    use_pushover_config_source(pushover_from_connection)
