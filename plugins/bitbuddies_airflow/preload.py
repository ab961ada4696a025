"""Import, once in a long-lived parent, what every task process would import on its own.

A task process is forked from its worker (Airflow's supervisor forks the task runner), the
worker from the scheduler (LocalExecutor) or from the Celery worker's main process. Each task
process then loads the task runner and parses its DAG file, whose imports (our ``include`` and
``bitbuddies_airflow`` modules, sqlmodel, Pillow, pydantic-settings, ...) cost 0.15-0.4 s of CPU
per task on two cores, and a generation runs 13 tasks. Imported here before the workers are
forked, those modules are already in every task process (copy-on-write pages shared by all), and
parsing a DAG file only runs its own body. The TLS contexts those processes' HTTP clients use are
built here too (:func:`warm_tls_contexts`).

What is imported: the task runner and the DAG bag the runner parses with, and every absolute
module a DAG file imports (anywhere in the file, so the imports inside tasks too), found by
reading the files (``ast``), never by running them: a DAG file may read settings or connections
at parse time, which a scheduler must not. A module that fails to import is logged and skipped:
the task that needs it fails as it would have, in its own process.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

# Set to 0 to let every task process import for itself (to compare, or to rule preloading out).
PRELOAD_ENV = "BITBUDDIES_PRELOAD_TASK_IMPORTS"
# Imported by every task process before it parses its DAG file.
TASK_RUNTIME_MODULES = ("airflow.sdk.execution_time.task_runner", "airflow.dag_processing.dagbag")


def preload_enabled() -> bool:
    return os.environ.get(PRELOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def dag_file_imports(dags_folder: str | Path) -> list[str]:
    """The absolute modules the DAG files in ``dags_folder`` import (and, for ``from a import b``,
    ``a.b`` in case it is a module), in file order, without repeats."""
    modules: dict[str, None] = {}
    for path in sorted(Path(dags_folder).rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (OSError, SyntaxError, ValueError) as exc:
            log.warning("Not preloading the imports of %s: %s", path, exc)
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(dict.fromkeys(alias.name for alias in node.names))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module != "__future__":
                modules[node.module] = None
                # ``from include import ledger``: a name may be a submodule (or just an attribute).
                modules.update(dict.fromkeys(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"))
    return list(modules)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # the parent is not a package: the name is an attribute
        return False


def preload(modules: Iterable[str]) -> list[str]:
    """Import those of ``modules`` that exist as modules (already imported ones cost nothing);
    returns those that failed."""
    failed = []
    for name in modules:
        if name in sys.modules or not _is_module(name):
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a DAG's broken import is its task's failure, not ours
            failed.append(name)
            log.warning("Not preloaded for task processes: %s (%s: %s)", name, type(exc).__name__, exc)
    return failed


def preload_for_tasks(dags_folder: str | Path | None = None) -> list[str]:
    """Preload the task runtime and the DAG files' imports; returns the modules that failed."""
    if dags_folder is None:
        from airflow.configuration import conf

        dags_folder = conf.get("core", "dags_folder")
    before = len(sys.modules)
    failed = preload([*TASK_RUNTIME_MODULES, *dag_file_imports(dags_folder)])
    warm_tls_contexts()
    log.info("Preloaded %d modules for task processes from %s", len(sys.modules) - before, dags_folder)
    return failed


def warm_tls_contexts() -> None:
    """Build, once in the parent, the TLS contexts every worker and task process would build for
    itself (the CA bundle parsed: 50-130 ms of CPU each): the task SDK's client to Airflow's
    API (one per task, in the worker) and ours (``include/http.py``: events, model jobs)."""
    try:
        from airflow.sdk.api.client import API_SSL_CA_FILE_PATH, API_SSL_CERT_PATH, Client

        Client._get_ssl_context_cached(API_SSL_CA_FILE_PATH, API_SSL_CERT_PATH)
        from include.http import tls_context

        tls_context()
    except Exception as exc:  # noqa: BLE001 - each process builds its own, as without this
        log.warning("TLS contexts not built ahead of the task processes: %s: %s", type(exc).__name__, exc)
