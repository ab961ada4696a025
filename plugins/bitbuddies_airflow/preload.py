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
reading the files (``ast``). A module that fails to import is logged and skipped: the task that
needs it fails as it would have, in its own process.

Then the DAG files themselves are parsed here once (:func:`parse_dag_files`), as each task
process would parse its own before running: a task process forked from here takes its DAG from
that parse when the file is unchanged. Our DAG files read only settings (the environment, the
same here) at parse time; one that fails here (it reads a connection, say, which needs a task's
API access) is simply parsed by its task processes, as before.
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
from typing import Any

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
    """Preload the task runtime and the DAG files' imports, and parse the DAG files; returns the
    modules that failed."""
    if dags_folder is None:
        dags_folder = configured_dags_folder()
    before = len(sys.modules)
    failed = preload([*TASK_RUNTIME_MODULES, *dag_file_imports(dags_folder)])
    warm_tls_contexts()
    log.info("Preloaded %d modules for task processes from %s", len(sys.modules) - before, dags_folder)
    parse_dag_files(dags_folder)
    return failed


def preload_if_enabled() -> list[str]:
    """:func:`preload_for_tasks` unless switched off: what ops/forkserver.py runs before it forks
    Airflow's services, so the scheduler's preload finds it done and shares it with the others."""
    return preload_for_tasks() if preload_enabled() else []


def configured_dags_folder() -> str:
    from airflow.configuration import conf

    return conf.get("core", "dags_folder")


# -- parsed DAG files -----------------------------------------------------------------------------
# Each task process parses its DAG file before it runs (Airflow's task runner builds a
# ``BundleDagBag`` of the file): 90-300 ms of CPU in a freshly forked process, on the critical path
# of every task. Parsed once here instead, a task process forked from this one finds its DAG
# already built (copy-on-write: what a task changes stays in its own process) and builds it again
# only when the file changed since (its size or modification time).
DAGS_FOLDER_BUNDLE = "dags-folder"
# Set to 0 to let every task process parse its DAG file itself.
PARSE_AHEAD_ENV = "BITBUDDIES_PARSE_DAGS_AHEAD"
# A DAG file's path (as the task runner joins it: the bundle's path and the file's) -> (its stat signature, bundle path, bundle name, the parsed bag)
_parsed: dict[str, tuple[tuple[int, int], str, str, Any]] = {}


def _signature(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def parse_dag_files(dags_folder: str | Path, bundle_name: str = DAGS_FOLDER_BUNDLE) -> list[str]:
    """Parse the DAG files of ``dags_folder`` (those changed since the last call) as a task process
    would, and let the task processes forked from here use them; returns the files parsed now. A
    file that fails to parse, or holds no DAG, is left to each task process, as without this."""
    if os.environ.get(PARSE_AHEAD_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return []
    from airflow.dag_processing import dagbag

    _install()
    bundle_path = Path(dags_folder)
    parsed = []
    for path in sorted(bundle_path.rglob("*.py")):
        key = os.path.normpath(path)
        signature = _signature(key)
        known = _parsed.get(key)
        if known is not None and known[0] == signature:
            continue
        _parsed.pop(key, None)
        try:
            # Not known (popped above): built as in a task process, an instance of the installed class.
            bag = dagbag.BundleDagBag(dag_folder=key, safe_mode=False, load_op_links=False, bundle_path=bundle_path, bundle_name=bundle_name)
        except Exception as exc:  # noqa: BLE001 - the task process parses it, and reports, as always
            log.warning("Not parsed ahead for task processes: %s (%s: %s)", path, type(exc).__name__, exc)
            continue
        if bag.import_errors or not bag.dags:
            continue
        # Stat again: a file written while it was parsed is parsed again by its tasks.
        if _signature(key) == signature:
            bag.parsed_ahead = True
            _parsed[key] = (signature, str(bundle_path), bundle_name, bag)
            parsed.append(path.name)
    if parsed:
        log.info("Parsed %s ahead for task processes", ", ".join(parsed))
    return parsed


def parsed_bag(dag_folder: Any, bundle_path: Any, bundle_name: Any) -> Any | None:
    """The bag parsed ahead for this DAG file, if it has not changed since; None otherwise."""
    key = os.path.normpath(os.fspath(dag_folder))
    known = _parsed.get(key)
    if known is None or known[1:3] != (str(bundle_path), bundle_name) or _signature(key) != known[0]:
        return None
    return known[3]


def _install() -> None:
    """Make the task runner's ``BundleDagBag(...)`` (looked up at each task's start) take a bag parsed
    ahead: a subclass whose construction returns the parsed bag, as it is, when the call is the
    task runner's (one file, ``safe_mode=False``, no operator links) and the file is unchanged."""
    from airflow.dag_processing import dagbag

    if hasattr(dagbag.BundleDagBag, "parsed_ahead_original"):
        return
    original = dagbag.BundleDagBag

    class ParsedAheadBundleDagBag(original):
        parsed_ahead_original = original

        def __new__(cls, dag_folder=None, *args, **kwargs):
            task_runners_call = not args and kwargs.get("safe_mode") is False and kwargs.get("load_op_links") is False
            if task_runners_call and dag_folder is not None:
                bag = parsed_bag(dag_folder, kwargs.get("bundle_path"), kwargs.get("bundle_name"))
                if bag is not None:
                    return bag
            return super().__new__(cls)

        def __init__(self, *args, **kwargs):
            if getattr(self, "parsed_ahead", False):
                return  # a bag parsed ahead, handed out again: Python calls __init__ on what __new__ returns
            super().__init__(*args, **kwargs)

    dagbag.BundleDagBag = ParsedAheadBundleDagBag


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
