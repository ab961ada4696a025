"""``python -m ops.forkserver``: Airflow's services forked from one process that imported Airflow once.

The embedded stack runs four Airflow processes: api-server, scheduler, dag-processor and
triggerer. Each imported Airflow (~150 MB of Python objects: ``import airflow`` alone is ~90 MB
of them) into memory of its own. Here one process imports what all four import, freezes those
objects out of the garbage collector's reach (``gc.freeze``: a collection would otherwise write to
every page holding them and so copy it), and forks each service from it: the pages stay shared
between the four for as long as nothing writes to them, and each service's PSS counts a fifth of
them. ``ops.stack.Stack`` starts this process first and asks it for the services
(``FORKED_SERVICES``); ``BITBUDDIES_FORK_SERVICES=0`` starts them as separate programs instead.

A forked service is what ``airflow <command>`` (or ``python -m ops.triggerer``) would be: its own
session and process group (so a stop or kill reaches its children), its log file on stdout and
stderr, its command line as its process title, Airflow's ORM pool disposed of in the child
(``airflow.settings`` does it at fork).

Protocol, one JSON object per line: the stack writes ``{"argv": [...], "log": path}`` on this
process's stdin and reads ``{"pid": N}`` (or ``{"error": "..."}``) back on its stdout; when a
service exits, ``{"exited": N, "code": C}`` follows on stdout (``C`` as ``subprocess`` gives it:
``-signal`` for a signal). The process ends when its stdin closes or on SIGTERM; services already
forked keep running (as separately started ones would).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import runpy
import select
import signal
import sys
import traceback

# What the four services import before they do anything (measured: these cover ~95 % of each
# service's imports at start).
PRELOAD = (
    "airflow.cli.cli_parser",
    "airflow.providers_manager",
    "airflow.api_fastapi.core_api.routes.public",
    "airflow.api_fastapi.core_api.routes.ui",
    "airflow.api_fastapi.execution_api.app",
    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager",
    "airflow.sdk.execution_time.supervisor",
    "airflow.sdk.execution_time.task_runner",
    "bitbuddies_airflow.executor",  # [core] executor on the embedded profile (ops/stack.py)
    "airflow.cli.commands.api_server_command",
    "airflow.cli.commands.scheduler_command",
    "airflow.cli.commands.dag_processor_command",
    "airflow.cli.commands.triggerer_command",
    "airflow.api_fastapi.app",
    "airflow.jobs.scheduler_job_runner",
    "airflow.jobs.triggerer_job_runner",
    "airflow.dag_processing.manager",
    "airflow.executors.local_executor",
    "uvicorn",
)

# Then called, by name as Airflow's configuration names things: the scheduler's preload of what its
# task processes import, and the DAG files parsed (plugins/bitbuddies_airflow/preload.py); Airflow's API app.
PRELOAD_CALLS = ("bitbuddies_airflow.preload.preload_if_enabled", "ops.forkserver.build_api_app")


def build_api_app() -> None:
    """Build Airflow's API app (its routes and their pydantic validators) as the api-server would.

    The forked api-server's ``airflow.api_fastapi.main`` takes it from ``cached_app``, so those
    objects (~100 MB) are the forkserver's shared pages instead of the api-server's own: its PSS
    went from 220 to 117 MB. Building it opens no database connection and starts no thread (and the
    ORM pool is disposed of at fork anyway); the app's lifespan (its stats, its sub-apps' start-up)
    still runs in the api-server.
    """
    from airflow.api_fastapi.app import cached_app

    cached_app(apps=os.environ.get("AIRFLOW_API_APPS", "all"))


def preload(modules=PRELOAD, calls=PRELOAD_CALLS) -> list[str]:
    """Import ``modules`` and run ``calls``; returns those that failed (left to the services)."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that fails here fails in its service, with its log
            traceback.print_exc()
            missing.append(name)
    for name in calls:
        module, _, function = name.rpartition(".")
        try:
            getattr(importlib.import_module(module), function)()
        except Exception:  # noqa: BLE001 - the service does it itself then
            traceback.print_exc()
            missing.append(name)
    return missing


def run(argv: list[str]) -> int:
    """Run ``argv`` in this (forked) process as its program would run: ``airflow ...`` or ``python -m module ...``."""
    program = os.path.basename(argv[0])
    if program == "airflow":
        from airflow.__main__ import main

        sys.argv = ["airflow", *argv[1:]]
        main()
        return 0
    if len(argv) >= 3 and argv[1] == "-m":
        sys.argv = [argv[2], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        return 0
    raise ValueError(f"cannot fork {argv!r}: not `airflow ...` nor `python -m module ...`")


def _exit_code(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _child(argv: list[str], log: str, keep_closed: list[int]) -> None:
    """In the forked child: become the service. Never returns."""
    code = 1
    try:
        os.setsid()
        for fd in keep_closed:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        # As a fresh Python would have them (SIGPIPE stays ignored, as Python sets it: a write to a
        # closed socket raises instead of killing the service).
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        try:
            from setproctitle import setproctitle

            setproctitle(" ".join(argv))
        except ImportError:
            pass
        code = run(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported in the service's log, as an uncaught error would be
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def serve(requests: int, replies: int) -> None:
    """Fork a service for every request line read from ``requests``; report exits on ``replies``."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wake-up fd is written
    children: set[int] = set()
    pending = b""

    def reply(message: dict) -> None:
        os.write(replies, (json.dumps(message) + "\n").encode())

    def reap() -> None:
        for pid in list(children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                children.discard(pid)
                continue
            if done:
                children.discard(pid)
                reply({"exited": pid, "code": _exit_code(status)})

    while True:
        ready, _, _ = select.select([requests, wake_read], [], [])
        if wake_read in ready:
            try:
                os.read(wake_read, 512)
            except BlockingIOError:
                pass
            reap()
        if requests in ready:
            chunk = os.read(requests, 65536)
            if not chunk:
                return  # the stack is gone
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(request["argv"], request["log"], [requests, replies, wake_read, wake_write])
                children.add(pid)
                reply({"pid": pid})
        reap()


def main() -> None:
    # The protocol keeps its own copies of stdin and stdout; whatever the imports print goes to
    # stderr (this process's log), not into the replies.
    requests, replies = os.dup(0), os.dup(1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    missing = preload()
    if missing:
        print(f"forkserver: not preloaded (each service imports them itself): {missing}", file=sys.stderr)
    gc.collect()
    gc.freeze()
    print(f"forkserver: ready (pid {os.getpid()})", file=sys.stderr, flush=True)
    serve(requests, replies)


if __name__ == "__main__":
    main()
