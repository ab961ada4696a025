"""Keeps a running stack's services up: a service that exits is started again, with backoff, logged.

``make up`` (ops/__main__.py) polls a :class:`Supervisor` once a second instead of stopping at the
first dead service. A service that exits (crash, OOM kill, ``kill -9``) is logged with its exit
code and how long it was up, what it left in its process group is killed (a crashed scheduler's
LocalExecutor workers, an API's stray children: nothing half-alive keeps running beside the new
one), and it is started again after a delay that doubles with each consecutive crash (1, 2, 4 ...
up to 60 s) and falls back to 1 s once the service has stayed up a minute. A service that cannot
start at all thus retries every minute without spinning, and one that crashes now and then comes
back at once.

What is in flight survives because every piece is built to resume: tasks a dead scheduler held are
reset and retried (``orphaned_tasks_check_interval``, heartbeat timeout, ops/stack.py), the
triggerer's triggers are taken over, the model server marks the jobs it was running as failed
(retried under a new submission key) and keeps its queue, and the API's trigger loop starts the
generations it accepted while Airflow was down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("bitbuddies.supervisor")


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    factor: float = 2.0
    longest: float = 60.0
    # Up this long, a service's next crash counts as its first again.
    stable_after: float = 60.0

    def delay(self, crashes: int) -> float:
        """Seconds before restart number ``crashes`` (1 for the first crash in a row)."""
        return min(self.first * self.factor ** (crashes - 1), self.longest)


@dataclass
class _Service:
    argv: list[str]
    started: float
    crashes: int = 0  # consecutive, reset once the service has been up stable_after
    restart_at: float | None = None
    restarts: int = field(default=0)  # in total, for the log


class Supervisor:
    """Watches ``stack.procs`` (an ``ops.stack.Stack``); call :meth:`poll` every second or so."""

    def __init__(self, stack, backoff: Backoff = Backoff(), clock: Callable[[], float] = time.monotonic):
        self.stack = stack
        self.backoff = backoff
        self.clock = clock
        now = clock()
        self.services = {name: _Service(argv=list(proc.args), started=now) for name, proc in stack.procs.items()}

    def poll(self) -> None:
        now = self.clock()
        for name, service in self.services.items():
            if service.restart_at is None:
                proc = self.stack.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    self._exited(name, service, proc.returncode, now)
            if service.restart_at is not None and now >= service.restart_at:
                self._restart(name, service, now)

    def _exited(self, name: str, service: _Service, code: int, now: float) -> None:
        up = now - service.started
        service.crashes = 1 if up >= self.backoff.stable_after else service.crashes + 1
        delay = self.backoff.delay(service.crashes)
        service.restart_at = now + delay
        log.warning(
            "%s exited with code %s after %.0f s up (crash %d in a row); restarting in %.0f s",
            name, code, up, service.crashes, delay,
        )  # fmt: skip
        self.stack.kill(name)  # what it left in its process group

    def _restart(self, name: str, service: _Service, now: float) -> None:
        try:
            proc = self.stack.start_one(name, service.argv)
        except OSError as exc:  # cannot even be started (binary gone): try again later
            service.crashes += 1
            service.restart_at = now + self.backoff.delay(service.crashes)
            log.error("%s could not be started (%s); next try in %.0f s", name, exc, service.restart_at - now)
            return
        service.restart_at = None
        service.started = now
        service.restarts += 1
        log.warning("%s restarted (pid %d, restart %d)", name, proc.pid, service.restarts)
