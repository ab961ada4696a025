"""The supervisor restarts what exits, with doubling delays, and logs each exit and restart.

Real processes (a service that crashes at once, one that sleeps) under a real ``Stack``; the clock
is the test's, so the delays are checked exactly without waiting for them.
"""

from __future__ import annotations

import logging
import signal
import sys

import psutil
import pytest

from ops.stack import Stack, StackConfig
from ops.supervisor import Backoff, Supervisor

CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]
SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stack(tmp_path):
    running = Stack(StackConfig(var_dir=tmp_path))
    running.cfg.log_dir.mkdir(parents=True)
    yield running
    running.stop()


def wait_exited(stack, name: str) -> None:
    stack.procs[name].wait(timeout=30)


def test_backoff_doubles_up_to_its_cap():
    assert [Backoff().delay(n) for n in (1, 2, 3, 4, 7, 20)] == [1, 2, 4, 8, 60, 60]


def test_a_crashing_service_is_restarted_with_doubling_delays_and_logged(stack, caplog):
    caplog.set_level(logging.WARNING, logger="bitbuddies.supervisor")
    clock = Clock()
    stack.start_one("crasher", CRASH)
    supervisor = Supervisor(stack, clock=clock)
    delays = []
    for _ in range(4):
        wait_exited(stack, "crasher")
        supervisor.poll()  # notices the exit
        assert "crasher" not in stack.procs
        restart_at = supervisor.services["crasher"].restart_at
        delays.append(restart_at - clock.now)
        clock.now = restart_at - 0.1
        supervisor.poll()
        assert "crasher" not in stack.procs  # not before its time
        clock.now = restart_at
        supervisor.poll()
        assert stack.procs["crasher"].poll() is None or stack.procs["crasher"].returncode == 3
    assert delays == [1, 2, 4, 8]
    exits = [r.getMessage() for r in caplog.records if "exited" in r.getMessage()]
    assert len(exits) == 4 and all("crasher exited with code 3" in m for m in exits), exits
    assert "crash 4 in a row" in exits[-1]
    restarts = [r.getMessage() for r in caplog.records if "restarted" in r.getMessage()]
    assert len(restarts) == 4 and restarts[-1].startswith("crasher restarted (pid") and "restart 4)" in restarts[-1]


def test_a_service_that_stayed_up_comes_back_after_the_first_delay(stack):
    clock = Clock()
    stack.start_one("api", SLEEP)
    stack.start_one("steady", SLEEP)
    supervisor = Supervisor(stack, clock=clock)
    supervisor.services["api"].crashes = 5  # crashed often, long ago
    clock.now += 120  # then stayed up two minutes
    first_pid = stack.procs["api"].pid
    stack.procs["api"].send_signal(signal.SIGKILL)
    wait_exited(stack, "api")
    supervisor.poll()
    assert supervisor.services["api"].restart_at == clock.now + 1
    clock.now += 1
    supervisor.poll()
    assert stack.procs["api"].pid != first_pid and stack.procs["api"].poll() is None
    assert stack.procs["steady"].poll() is None and supervisor.services["steady"].restarts == 0


def test_what_a_dead_service_left_in_its_group_is_killed(stack):
    # The service starts a child in its process group, then dies: the child must not outlive it.
    stack.start_one(
        "parent",
        [sys.executable, "-c", "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print(p.pid, flush=True); time.sleep(0.5)"],
    )
    supervisor = Supervisor(stack, clock=Clock())
    wait_exited(stack, "parent")
    child = psutil.Process(int((stack.cfg.log_dir / "parent.log").read_text().split()[0]))
    supervisor.poll()
    _, alive = psutil.wait_procs([child], timeout=10)  # SIGKILL is delivered asynchronously
    assert not alive or child.status() == psutil.STATUS_ZOMBIE


def test_a_service_forked_by_the_forkserver_is_restarted_through_it(stack, caplog):
    # An Airflow service's name: the stack asks its forkserver (ops/forkserver.py) for it.
    caplog.set_level(logging.WARNING, logger="bitbuddies.supervisor")
    stack.start_one("forkserver")
    clock = Clock()
    crasher = [sys.executable, "-m", "tests.ops.forkserver_child", "exit", "3"]
    first = stack.start_one("dag-processor", crasher)
    assert type(first).__name__ == "ForkedService" and psutil.Process(first.pid).ppid() == stack.procs["forkserver"].pid
    supervisor = Supervisor(stack, clock=clock)
    wait_exited(stack, "dag-processor")
    supervisor.poll()
    assert "dag-processor exited with code 3" in caplog.text
    clock.now = supervisor.services["dag-processor"].restart_at
    supervisor.poll()
    again = stack.procs["dag-processor"]
    assert type(again).__name__ == "ForkedService" and again.pid != first.pid
    assert again.wait(timeout=60) == 3
    assert (stack.cfg.log_dir / "dag-processor.log").read_text().count("child pid=") == 2
