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


def test_preloading_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.delenv(preload.PRELOAD_ENV, raising=False)
    assert preload.preload_enabled()
    monkeypatch.setenv(preload.PRELOAD_ENV, "0")
    assert not preload.preload_enabled()
    # Parsing the DAG files ahead has a switch of its own: off, nothing is parsed (or patched).
    (tmp_path / "a_dag.py").write_text("raise SystemExit('not run')\n")
    monkeypatch.setenv(preload.PARSE_AHEAD_ENV, "0")
    assert preload.parse_dag_files(tmp_path) == []



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


PARSE_AHEAD_PROBE = '''
import os, sys, time
from pathlib import Path
from bitbuddies_airflow import preload

folder = Path(sys.argv[1])
dag_file = folder / "probe_dag.py"
parsed_now = preload.parse_dag_files(folder)


def in_a_forked_task_process():
    """What a task process forked from here gets for its DAG file (the task runner's call)."""
    read, write = os.pipe()
    if os.fork() == 0:
        from airflow.dag_processing.dagbag import BundleDagBag

        bag = BundleDagBag(dag_folder=str(dag_file), safe_mode=False, load_op_links=False, bundle_path=folder,
                           bundle_name="dags-folder")
        dag = bag.dags["probe"]
        os.write(write, f"{bag is preload._parsed[str(dag_file)][3]} {sorted(dag.task_ids)}".encode())
        os._exit(0)
    os.close(write)
    os.wait()
    return os.read(read, 1000).decode()


print("OUT", sorted(parsed_now))
print("OUT", in_a_forked_task_process())
# The file changes: its tasks parse it themselves (until the next parse_dag_files here).
dag_file.write_text(dag_file.read_text().replace('["a"]', '["a", "b"]'))
print("OUT", in_a_forked_task_process())
print("OUT", preload.parse_dag_files(folder))
print("OUT", in_a_forked_task_process())
print("OUT", (folder / "parses.log").read_text().count("parsed"))
'''

PROBE_DAG = '''
from pathlib import Path
from datetime import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with (Path(__file__).parent / "parses.log").open("a") as log:
    log.write("parsed\\n")
with DAG("probe", schedule=None, start_date=datetime(2026, 1, 1)):
    for name in ["a"]:
        EmptyOperator(task_id=name)
'''


def test_dag_files_are_parsed_ahead_and_task_processes_take_them_until_a_file_changes(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "probe_dag.py").write_text(PROBE_DAG)
    (dags / "reads_a_connection.py").write_text("raise RuntimeError('needs a task context')\n")
    (dags / "helpers.py").write_text("VALUE = 1\n")  # no DAG: nothing to keep
    probe = tmp_path / "probe.py"
    probe.write_text(PARSE_AHEAD_PROBE)
    out = subprocess.run([sys.executable, str(probe), str(dags)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}"}).stdout
    assert [line[4:] for line in out.splitlines() if line.startswith("OUT ")] == [
        "['probe_dag.py']",  # the failing file and the one without a DAG are left to their tasks
        "True ['a']",  # the bag parsed ahead, no parse in the task process
        "False ['a', 'b']",  # changed since: parsed by the task process, as without preloading
        "['probe_dag.py']",  # parsed again here (as before forking a new worker)
        "True ['a', 'b']",
        "3",  # here twice, once in the task process that found the file changed
    ]
