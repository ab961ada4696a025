"""The BitBuddies Airflow plugin: the operator's views in the Airflow UI.

- "Alerts" and "Ledger audit" in the UI's navigation: read-only pages of a FastAPI app mounted on
  the api-server under ``/bitbuddies`` (``bitbuddies_airflow/console.py``; Airflow's auth manager
  decides who may see them).
- Airflow's audit log of its REST API's writes committed off the api-server's event loop
  (``bitbuddies_airflow/action_log_fix.py``: on SQLite, a commit waiting on the loop could lock out
  every other writer).
- Each generation run links to its generation page in the web app:

An ``external_views`` entry with ``destination: "dag_run"`` is a tab on every DAG run page of the
Airflow 3 UI (the UI lists only views with a ``url_route``, at ``.../runs/{run_id}/plugin/{url_route}``)
showing ``href`` in an iframe after replacing ``{DAG_ID}`` and ``{RUN_ID}``. A generation's run id
is its generation id (a run from the trigger form: the page finds the generation whose id is
derived from the run id), so the tab shows ``{public_base_url}/g/{RUN_ID}``; the page itself says
"not a generation" for other DAGs' runs (``?dag_id=``) and links back to the run.

The web app's address is read when the api-server loads the plugin
(``BITBUDDIES_PUBLIC_BASE_URL``, the address the operator's browser reaches).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from bitbuddies_airflow import action_log_fix, deadline_fix
from include.settings import get_settings

# Clearing a generation run (REST API, UI) must work before its queued-at deadline has passed.
deadline_fix.apply()

GENERATION_VIEW_ROUTE = "bitbuddies-generation"
CONSOLE_PREFIX = "/bitbuddies"
OPERATOR_VIEWS = (("Alerts", "alerts", "bitbuddies-alerts"), ("Ledger audit", "audit", "bitbuddies-ledger-audit"))


def generation_view() -> dict[str, str]:
    base = get_settings().public_base_url.rstrip("/")
    return {
        "name": "BitBuddies generation",
        "href": f"{base}/g/{{RUN_ID}}?dag_id={{DAG_ID}}",
        "destination": "dag_run",
        "url_route": GENERATION_VIEW_ROUTE,
    }


def operator_views() -> list[dict[str, str]]:
    """The console's pages as entries of the UI's navigation (shown in an iframe, same origin)."""
    return [
        {"name": name, "href": f"{CONSOLE_PREFIX}/{page}", "destination": "nav", "category": "BitBuddies", "url_route": route}
        for name, page, route in OPERATOR_VIEWS
    ]


def console_app() -> dict:
    from bitbuddies_airflow.console import app

    return {"app": app, "url_prefix": CONSOLE_PREFIX, "name": "BitBuddies operator views"}


class BitBuddiesPlugin(AirflowPlugin):
    name = "bitbuddies"
    external_views = [generation_view(), *operator_views()]
    fastapi_apps = [console_app()]
    fastapi_root_middlewares = [action_log_fix.root_middleware()]
