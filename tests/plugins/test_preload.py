"""Tests for plugins/bitbuddies_airflow/preload.py: what task processes find already imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bitbuddies_airflow import preload

ROOT = Path(__file__).resolve().parents[2]


def test_imports_are_read_from_the_files_not_run(tmp_path):
    (tmp_path / "a_dag.py").write_text(
        "from __future__ import annotations\n"
        "import json, os.path\n"
        "from email import message, utils as u\n"
        "from . import sibling\n"
        "raise SystemExit('a DAG file is never executed')\n"
        "def task():\n"
        "    import csv\n"
        "    from textwrap import dedent\n"
    )
    (tmp_path / "broken.py").write_text("def (:\n")
    assert preload.dag_file_imports(tmp_path) == [
        "json", "os.path", "email", "email.message", "email.utils", "csv", "textwrap", "textwrap.dedent"]


def test_preload_imports_modules_skips_attributes_and_reports_failures(tmp_path, monkeypatch):
    (tmp_path / "preload_probe_ok.py").write_text("LOADED = True\n")
    (tmp_path / "preload_probe_bad.py").write_text("raise RuntimeError('broken dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("preload_probe_ok", "preload_probe_bad"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    failed = preload.preload(["preload_probe_ok", "preload_probe_bad", "textwrap.dedent", "no_such_module_here"])
    assert failed == ["preload_probe_bad"]
    assert sys.modules["preload_probe_ok"].LOADED


def test_the_generation_dags_imports_are_preloaded_in_a_fresh_process():
    # What a forked task process of the generation DAG inherits: the domain modules it uses.
    code = (
        "import sys; from bitbuddies_airflow.preload import preload_for_tasks;"
        f"failed = preload_for_tasks({str(ROOT / 'dags')!r});"
        "print(failed, all(m in sys.modules for m in ('include.ledger', 'include.generations',"
        " 'bitbuddies_airflow.operators', 'airflow.sdk.execution_time.task_runner', 'include.media.transcode')),"
        # The TLS contexts are built: a forked child's clients reuse them.
        " __import__('include.http').http.tls_context.cache_info().currsize,"
        " __import__('airflow.sdk.api.client').sdk.api.client.Client._get_ssl_context_cached.cache_info().currsize)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}"}).stdout
    assert out.strip().splitlines()[-1] == "[] True 1 1"


def test_preloading_can_be_turned_off(monkeypatch):
    monkeypatch.delenv(preload.PRELOAD_ENV, raising=False)
    assert preload.preload_enabled()
    monkeypatch.setenv(preload.PRELOAD_ENV, "0")
    assert not preload.preload_enabled()



def test_celery_workers_preload_when_celery_imports_their_modules():
    code = (
        "import sys; from celery.signals import import_modules;"
        "from airflow.providers.celery.executors.celery_executor import app;"
        "before = 'include.ledger' in sys.modules;"
        "import_modules.send(sender=app);"
        "print(before, 'include.ledger' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}", "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "bitbuddies_airflow.celery_config.CELERY_CONFIG"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip().splitlines()[-1] == "False True"
