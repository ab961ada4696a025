"""plugins/bitbuddies_plugin.py: Airflow loads it, and its run tab points at the generation page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

ROOT = Path(__file__).resolve().parents[2]


def test_external_view_is_a_dag_run_tab_on_the_generation_page(monkeypatch):
    from include.settings import get_settings

    monkeypatch.setenv("BITBUDDIES_PUBLIC_BASE_URL", "https://buddies.example.com/")
    get_settings.cache_clear()
    try:
        from bitbuddies_plugin import generation_view

        view = ExternalViewResponse.model_validate(generation_view())
    finally:
        get_settings.cache_clear()
    assert view.destination == "dag_run" and view.url_route  # the UI lists run tabs with a url_route only
    assert view.href == "https://buddies.example.com/g/{RUN_ID}?dag_id={DAG_ID}"
    # What the UI does with it (placeholders replaced, URL-encoded) gives the page of the generation.
    href = view.href.replace("{RUN_ID}", "abc123").replace("{DAG_ID}", "bitbuddies_generate")
    assert href == "https://buddies.example.com/g/abc123?dag_id=bitbuddies_generate"


def in_airflow(code: str, airflow_home, **env: str) -> dict:
    """Run ``code`` in a fresh process with this plugins folder (Airflow's plugin manager caches what
    it loaded); returns the JSON it printed last."""
    env = os.environ | {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(ROOT),
        **env,
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_airflow_loads_the_plugin_from_the_plugins_folder(tmp_path):
    code = (
        "import json; from airflow import plugins_manager as pm\n"
        "info = [p for p in pm.get_plugin_info() if p['name'] == 'bitbuddies']\n"
        "print(json.dumps({'info': info, 'errors': {k: str(v) for k, v in pm.get_import_errors().items()}}, default=str))"
    )
    loaded = in_airflow(code, tmp_path, BITBUDDIES_PUBLIC_BASE_URL="http://buddies.test:8000")
    assert not any("bitbuddies_plugin" in path for path in loaded["errors"]), loaded["errors"]
    [plugin] = loaded["info"]
    assert plugin["external_views"][0] == {
        "name": "BitBuddies generation",
        "href": "http://buddies.test:8000/g/{RUN_ID}?dag_id={DAG_ID}",
        "destination": "dag_run",
        "url_route": "bitbuddies-generation",
    }
    assert [v["name"] for v in plugin["external_views"][1:]] == ["Alerts", "Ledger audit"]
    assert "/bitbuddies" in json.dumps(plugin["fastapi_apps"])


def test_the_api_server_writes_its_action_log_off_the_event_loop(tmp_path):
    """Airflow's own app, as the api-server builds it: the plugin's middleware is in it and overrides
    the action log of every REST write, triggering a DAG run included (bitbuddies_airflow/action_log_fix.py)."""
    code = (
        "import json\n"
        "from fastapi.routing import APIRoute\n"
        "from airflow.api_fastapi.app import create_app\n"
        "from bitbuddies_airflow.action_log_fix import ActionLogOffTheLoop, install\n"
        "app = create_app()\n"
        "middleware = [m.cls.__name__ for m in app.user_middleware]\n"
        "count = install(app)\n"
        "[trigger] = [r for r in app.routes if isinstance(r, APIRoute) and r.path == '/api/v2/dags/{dag_id}/dagRuns' and 'POST' in r.methods]\n"
        "overridden = [d.call.__qualname__ for d in trigger.dependant.dependencies if d.call in app.dependency_overrides]\n"
        "print(json.dumps({'middleware': middleware, 'count': count, 'overridden': overridden}))"
    )
    found = in_airflow(code, tmp_path)
    assert "ActionLogOffTheLoop" in found["middleware"]
    assert found["count"] > 20  # every write of the public API (46 in Airflow 3.3)
    assert found["overridden"] == ["action_logging.<locals>.log_action"]
