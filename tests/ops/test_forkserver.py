"""ops/forkserver.py and the stack's side of it (ops.stack.ForkServer, ForkedService), on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ops.stack import ROOT, FORKED_SERVICES, ForkServer, StackConfig, environment, process_specs, uses_forkserver

CHILD = "tests.ops.forkserver_child"


@pytest.fixture()
def forkserver(tmp_path):
    # The stack's Airflow settings (the plugins folder, the DAGs folder), in this test's home.
    env = os.environ | environment(StackConfig(var_dir=tmp_path / "var"))
    log = open(tmp_path / "forkserver.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.forkserver"], env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=log, start_new_session=True,
    )  # fmt: skip
    server = ForkServer(proc)
    yield server
    proc.kill()
    proc.wait(timeout=30)


def spawn(server, tmp_path, *args):
    log = tmp_path / f"child-{len(os.listdir(tmp_path))}.log"
    return server.spawn([sys.executable, "-m", CHILD, *args], log, timeout=120), log


def test_a_forked_service_runs_in_its_own_session_with_its_log_and_title_and_reports_its_exit(forkserver, tmp_path):
    child, log = spawn(forkserver, tmp_path, "exit", "3")
    assert child.wait(timeout=30) == 3
    [line] = log.read_text().splitlines()
    assert f"pid={child.pid} pgid={child.pid} sid={child.pid}" in line  # killpg(pid) reaches it and its children
    assert "sigpipe=ignored" in line  # as in any Python program: a closed socket raises, it does not kill
    assert line.endswith(f"title={sys.executable} -m {CHILD} exit 3")
    log_text = (tmp_path / "forkserver.log").read_text()
    assert "forkserver: ready" in log_text and "not preloaded" not in log_text, log_text[-3000:]


def test_the_api_server_takes_airflows_app_built_in_the_forkserver(forkserver, tmp_path):
    child, log = spawn(forkserver, tmp_path, "api", "0")
    assert child.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert "api app built before the fork: 1, taken from it: True" in log.read_text()


def test_signals_and_timeouts_behave_as_a_popens(forkserver, tmp_path):
    child, _ = spawn(forkserver, tmp_path, "sleep", "0")
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=0.3)
    assert child.poll() is None
    os.killpg(child.pid, signal.SIGTERM)
    assert child.wait(timeout=30) == -signal.SIGTERM
    child.send_signal(signal.SIGKILL)  # already gone: nothing to signal


def test_a_service_outlives_a_dead_forkserver_and_is_seen_to_end(forkserver, tmp_path):
    child, _ = spawn(forkserver, tmp_path, "sleep", "0")
    forkserver.proc.kill()
    forkserver.proc.wait(timeout=30)
    time.sleep(0.2)
    assert child.poll() is None  # still running
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert child.returncode == 1  # its code went with the forkserver


def test_the_embedded_stack_forks_airflows_services_and_the_switch_turns_it_off(monkeypatch):
    specs = process_specs(StackConfig())
    assert list(specs)[0] == "forkserver" and set(FORKED_SERVICES) <= set(specs)
    assert uses_forkserver(StackConfig()) and not uses_forkserver(StackConfig(profile="production"))
    monkeypatch.setenv("BITBUDDIES_FORK_SERVICES", "0")
    assert "forkserver" not in process_specs(StackConfig())
