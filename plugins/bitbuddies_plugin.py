"""The BitBuddies Airflow plugin: each generation run links to its generation page in the web app.

An ``external_views`` entry with ``destination: "dag_run"`` is a tab on every DAG run page of the
Airflow 3 UI (the UI lists only views with a ``url_route``, at ``.../runs/{run_id}/plugin/{url_route}``)
showing ``href`` in an iframe after replacing ``{DAG_ID}`` and ``{RUN_ID}``. A generation's run id
is its generation id, so the tab shows ``{public_base_url}/g/{RUN_ID}``; the page itself says
"not a generation" for other DAGs' runs (``?dag_id=``) and links back to the run.

The web app's address is read when the api-server loads the plugin
(``BITBUDDIES_PUBLIC_BASE_URL``, the address the operator's browser reaches).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from include.settings import get_settings

GENERATION_VIEW_ROUTE = "bitbuddies-generation"


def generation_view() -> dict[str, str]:
    base = get_settings().public_base_url.rstrip("/")
    return {
        "name": "BitBuddies generation",
        "href": f"{base}/g/{{RUN_ID}}?dag_id={{DAG_ID}}",
        "destination": "dag_run",
        "url_route": GENERATION_VIEW_ROUTE,
    }


class BitBuddiesPlugin(AirflowPlugin):
    name = "bitbuddies"
    external_views = [generation_view()]
