"""A task's supervisor notices its task process exit at once, not up to 5 s later.

Airflow 3.3's supervisor (``airflow.sdk.execution_time.supervisor.WatchedSubprocess``, the worker
side of every task) watches its task process through the process's sockets (stdout, stderr,
logs, requests) in a ``select`` that also times its heartbeats, and checks whether the process
has exited after each wake-up. A process closes those sockets as it shuts down, a moment before
it exits; when the supervisor read the last EOF in that moment, the process was still alive and
the next ``select`` has nothing left to watch: it sleeps its full timeout (``[workers]
min_heartbeat_interval``, 5 s) before it looks again. Measured on the embedded stack, about half
the task processes of a generation were noticed 5.03 s after they had ended: their executor
worker (and the task process's memory) stayed taken that long, the run's last tasks finished
that much later for the scheduler, and under load fewer workers were free for the next tasks.

:func:`apply` makes a supervisor with nothing left to watch wait for the process itself (the
same bounded wait, ended by the exit). It is applied in each LocalExecutor worker
(``executor.py``) and in each Celery worker (``celery_config.py``), before they supervise tasks.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def apply() -> None:
    """Patch ``WatchedSubprocess._service_subprocess`` in this process (idempotent)."""
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    service = WatchedSubprocess._service_subprocess
    if getattr(service, "waits_for_exit", False):
        return

    def _service_subprocess(self, max_wait_time: float, raise_on_timeout: bool = False, expect_signal=None):
        if self._exit_code is None and not self.selector.get_map():
            # Every socket is closed: the process is on its way out. Wait for it, not for select.
            try:
                self._process.wait(timeout=max(0.01, max_wait_time))
            except self._process.TimeoutExpired:
                pass
            except Exception:  # the process is gone or not ours: the usual check below says which
                log.debug("waiting for task process %s failed", self.pid, exc_info=True)
            max_wait_time = 0
        return service(self, max_wait_time=max_wait_time, raise_on_timeout=raise_on_timeout, expect_signal=expect_signal)

    _service_subprocess.waits_for_exit = True
    _service_subprocess.original = service
    WatchedSubprocess._service_subprocess = _service_subprocess
