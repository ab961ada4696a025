"""A task's supervisor notices the exit of a process that closed its sockets at once (supervisor_exit.py)."""

from __future__ import annotations

import selectors
import subprocess
import sys
import time

import psutil
from airflow.sdk.execution_time.supervisor import PsutilTracker, WatchedSubprocess

from bitbuddies_airflow import supervisor_exit

HEARTBEAT_WAIT_S = 2.0  # the supervisor's select timeout (min_heartbeat_interval: 5 s on the stack)
EXITS_AFTER_S = 0.3


class Supervised:
    """What ``_service_subprocess`` reads of a supervisor whose task process has closed every socket."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.selector = selectors.DefaultSelector()  # nothing left to watch
        self._exit_code = None
        self._process_exit_monotonic = None
        self._process = PsutilTracker(psutil.Process(process.pid))
        self.pid = process.pid

    _check_subprocess_exit = WatchedSubprocess._check_subprocess_exit


def exiting_process() -> subprocess.Popen:
    # Closes its output, as a task process does while it shuts down, then exits a moment later.
    code = f"import os, time; os.close(1); os.close(2); time.sleep({EXITS_AFTER_S})"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def serve_until_exit(service) -> tuple[int, float]:
    process = exiting_process()
    supervised = Supervised(process)
    started = time.monotonic()
    code = service(supervised, max_wait_time=HEARTBEAT_WAIT_S)
    while code is None:
        code = service(supervised, max_wait_time=HEARTBEAT_WAIT_S)
    return code, time.monotonic() - started


def test_the_exit_is_noticed_when_it_happens_not_at_the_next_heartbeat():
    supervisor_exit.apply()
    supervisor_exit.apply()  # once is enough
    service = WatchedSubprocess._service_subprocess
    assert service.waits_for_exit and not getattr(service.original, "waits_for_exit", False)

    code, took = serve_until_exit(service)
    assert code == 0
    assert took < HEARTBEAT_WAIT_S * 0.75  # ~EXITS_AFTER_S

    code, took = serve_until_exit(service.original)  # Airflow as shipped: the select sleeps it out
    assert code == 0
    assert took >= HEARTBEAT_WAIT_S * 0.95
