"""Never stuck: a task lost with its process comes back within 60 s, over the real stack.

One test per window a task can be lost in on the embedded default (RecoveringLocalExecutor):

- **queued, not started, after a deferral**: the LocalExecutor worker that takes ``animate``'s
  resume is stopped (SIGSTOP) the moment its process title names the task, before it starts the
  task runner, then killed (SIGKILL);
- **running, supervisor killed**: the worker (the task's supervisor) is killed while its task
  runner waits for a held submit answer; its task runner must die with it;
- **running, task runner killed**: the task runner is killed while it fetches a held result.

And under the supervisor ``make up`` runs: the API and the model server are killed while two
generations are in flight; both come back and every generation succeeds.

Each killed task is retried within 30 s and its generation succeeds (within 60 s of the kill on an
idle machine: bench/bench_recovery.py; within a generous bound here), the model server saw one job
per stage, and the ledger audit is clean. The model server's answer-delay faults hold the task in the window; the
worker is found by its process title (``airflow worker -- LocalExecutor: <ti id>``, its task
runner ``airflow worker -- <ti id>``), read from /proc so that the stop lands within a millisecond.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from include.stages import MODEL_STAGES
from ops.stack import environment
from ops.supervisor import Backoff, Supervisor
from tests.e2e.conftest import wait_for_generation
from tests.e2e.test_model_jobs import Airflow, assert_one_job_per_generation_and_stage, start_generations
from tests.e2e.test_model_jobs import airflow, model_server  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DAG_ID = "bitbuddies_generate"
# The product's bound, kill -> generation succeeded; bench/bench_recovery.py measures it run after
# run. The tests assert generous bounds instead (the machine is shared: at load 15 the stages left
# after a kill took 70 s on their own): the retry itself, then the generation.
RECOVERY_BOUND_S = 60
RETRY_BOUND_S = 30
TEST_BOUND_S = 180


def task_instance(airflow: Airflow, gid: str, task_id: str) -> dict:
    # Polling: a slow answer on a loaded machine is a missed poll, not a failure.
    try:
        resp = airflow.http.get(f"/dags/{DAG_ID}/dagRuns/{gid}/taskInstances/{task_id}")
    except httpx.TimeoutException:
        return {}
    return resp.json() if resp.status_code == 200 else {}


def wait_for_state(airflow: Airflow, gid: str, task_id: str, states: set[str], timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        ti = task_instance(airflow, gid, task_id)
        if ti.get("state") in states:
            return ti
        time.sleep(0.2)
    raise AssertionError(f"{task_id} of {gid} never reached {states}: {ti}")


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def worker_taking(stack, ti_id: str, timeout: float = 120) -> int:
    """The pid of the LocalExecutor worker that takes task instance ``ti_id`` from now on, polled
    every ms: a worker whose title turns to the task (one still showing it from the try's first
    part, finishing its deferral, is not the one that takes the resume)."""
    wanted = f"LocalExecutor: {ti_id}"
    scheduler = psutil.Process(stack.procs["scheduler"].pid)
    deadline = time.time() + timeout
    # worker -> whether its title named the task when last read; a worker spawned later has not.
    showing = {proc.pid: title(proc.pid).endswith(wanted) for proc in scheduler.children()}
    refreshed = time.time()
    while time.time() < deadline:
        if time.time() - refreshed > 0.5:  # workers are respawned after a death
            for proc in scheduler.children():
                showing.setdefault(proc.pid, False)
            refreshed = time.time()
        for pid, before in showing.items():
            now = title(pid).endswith(wanted)
            if now and not before:
                return pid
            showing[pid] = now
        time.sleep(0.001)
    raise AssertionError(f"no worker took {ti_id} within {timeout} s")


def task_runner(ti_id: str) -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline"]):
        if " ".join(proc.info["cmdline"] or []).startswith(f"airflow worker -- {ti_id}"):
            return proc
    return None


def running_task_runner(airflow: Airflow, gid: str, task_id: str) -> psutil.Process:
    ti = wait_for_state(airflow, gid, task_id, {"running"})
    deadline = time.time() + 60
    while (runner := task_runner(ti["id"])) is None:
        assert time.time() < deadline, f"no task runner for {task_id} of {gid}"
        time.sleep(0.1)
    return runner


def kill_runner_fetching(airflow: Airflow, model_server, gid: str, task_id: str) -> float:
    """Kill the task runner that waits for the (held) result of the stage's finished job: the one
    that submitted it or, when the job outlasted the grace, the one that resumed; returns when."""
    ti = wait_for_state(airflow, gid, task_id, {"running"})
    deadline = time.time() + 120
    while not job_finished(model_server.stats(), gid, task_id):
        assert time.time() < deadline, f"{task_id}'s job never finished"
        time.sleep(0.2)
    while True:
        assert time.time() < deadline, f"no task runner fetched {task_id}'s result"
        runner = task_runner(ti["id"])
        if runner is not None and task_instance(airflow, gid, task_id).get("state") == "running":
            try:
                runner.kill()
                return time.time()
            except psutil.NoSuchProcess:  # the part before a deferral, just gone
                pass
        time.sleep(0.1)


def seconds_until_succeeded(api, key: str, gid: str, since: float, timeout: float = 600) -> float:
    deadline, gen = time.time() + timeout, None
    while time.time() < deadline:
        try:
            gen = api.get(f"/api/generations/{gid}", headers={"Authorization": f"Bearer {key}"}).json()
        except httpx.TimeoutException:
            continue
        if gen["status"] in ("succeeded", "failed"):
            assert gen["status"] == "succeeded", gen
            return time.time() - since
        time.sleep(0.5)
    raise AssertionError(f"{gid} did not finish within {timeout} s of the kill: {gen}")


def assert_ledger_audit_clean(stack) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "ledger", "audit"], env=environment(stack.cfg), capture_output=True, text=True
    )
    assert out.returncode == 0 and "0 violations" in out.stdout, out.stdout + out.stderr


def submitted(stats: dict, gid: str, task_id: str) -> set[str]:
    """The request ids of the stage's jobs the model server has accepted."""
    return {s["request_id"] for s in stats["submissions"] if s["idempotency_key"].startswith(f"{DAG_ID}:{gid}:{task_id}:")}


def job_finished(stats: dict, gid: str, task_id: str) -> bool:
    return bool(submitted(stats, gid, task_id) & {j["request_id"] for j in stats["jobs"]})


def assert_recovered(api, key, airflow, stack, model_server, gid: str, task_id: str, killed_at: float, what: str) -> dict:
    """The killed task's next try starts, the generation succeeds within the bound of the kill, one
    model job per stage, a clean ledger. Returns the jobs per stage."""
    deadline = killed_at + RETRY_BOUND_S
    while (ti := task_instance(airflow, gid, task_id)).get("try_number", 0) < 2:
        assert time.time() < deadline, f"{task_id} was not retried: {ti}"
        time.sleep(0.2)
    retried = time.time() - killed_at
    took = seconds_until_succeeded(api, key, gid, killed_at)
    print(f"{what}: {task_id} retried {retried:.1f} s and the generation succeeded {took:.1f} s after the kill")
    assert took < TEST_BOUND_S, took
    record = assert_one_job_per_generation_and_stage(model_server.stats(), [gid])
    assert_ledger_audit_clean(stack)
    return record


def kill_stopped_worker_at_resume(stack, airflow: Airflow, gid: str) -> tuple[float, str]:
    """Stop the worker that takes ``animate``'s resume, check the task is still queued and has no
    task runner, kill the worker; returns the kill time and what the task was doing."""
    deferred = wait_for_state(airflow, gid, "animate", {"deferred"})
    pid = worker_taking(stack, deferred["id"])
    os.kill(pid, signal.SIGSTOP)
    runner_started = bool(psutil.Process(pid).children())
    state = task_instance(airflow, gid, "animate").get("state")
    os.kill(pid, signal.SIGKILL)
    return time.time(), f"{state}, task runner {'started' if runner_started else 'not started'}"


# animate's job outlasts the grace its submitting task watches it for: the task defers and is
# resumed by a worker.
RESUME_LATENCY_S = MODEL_STAGES["animate"].waits.grace + 5.0


def test_a_worker_killed_as_it_takes_a_resumed_task(stack, api, make_user, airflow, model_server):
    model_server.faults(latency_s={"bitbuddies/animate": RESUME_LATENCY_S})
    key = make_user(tokens=1)
    (gid,) = start_generations(api, key, 1)
    killed_at, window = kill_stopped_worker_at_resume(stack, airflow, gid)
    # Stopped within a millisecond of taking the task: Airflow has not seen it start (on a loaded
    # machine the worker may have forked the task runner by then; it dies with the worker).
    assert window.startswith("queued"), window
    assert_recovered(api, key, airflow, stack, model_server, gid, "animate", killed_at, f"worker killed at resume ({window})")


def test_a_supervisor_killed_while_its_task_runs(stack, api, make_user, airflow, model_server):
    # segment_video's task runner waits 5 s for its submit answer: the job exists, not yet stored.
    model_server.faults(submit_answer_delay_s={"bitbuddies/segment-video": 5.0})
    key = make_user(tokens=1)
    (gid,) = start_generations(api, key, 1)
    runner = running_task_runner(airflow, gid, "segment_video")
    supervisor = runner.parent()
    assert "LocalExecutor" in " ".join(supervisor.cmdline()), supervisor.cmdline()
    deadline = time.time() + 60
    while not submitted(model_server.stats(), gid, "segment_video"):  # the answer is now held
        assert time.time() < deadline, "segment_video never submitted"
        time.sleep(0.2)
    supervisor.kill()
    killed_at = time.time()
    # The task runner dies with its supervisor (PR_SET_PDEATHSIG): no orphan runs beside the retry.
    psutil.wait_procs([runner], timeout=10)
    assert not runner.is_running(), "the task runner outlived its supervisor"
    record = assert_recovered(api, key, airflow, stack, model_server, gid, "segment_video", killed_at, "supervisor killed mid-stage")
    assert record[(gid, "segment_video")]["replays"] >= 1  # the retry got the first try's job


def test_a_task_runner_killed_mid_stage(stack, api, make_user, airflow, model_server):
    # animate's result answer is held 10 s: the task runner is killed while it fetches.
    model_server.faults(result_answer_delay_s={"bitbuddies/animate": 10.0})
    key = make_user(tokens=1)
    (gid,) = start_generations(api, key, 1)
    killed_at = kill_runner_fetching(airflow, model_server, gid, "animate")
    assert_recovered(api, key, airflow, stack, model_server, gid, "animate", killed_at, "task runner killed mid-stage")


@pytest.fixture
def supervised(stack):
    """The session stack under the supervisor ``make up`` runs, for the length of one test."""
    supervisor = Supervisor(stack, backoff=Backoff(first=0.5))
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            supervisor.poll()
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    yield supervisor
    stop.set()
    thread.join()


def kill_service(stack, name: str) -> None:
    os.killpg(stack.procs[name].pid, signal.SIGKILL)


def wait_answering(url: str, timeout: float = 120) -> float:
    started = time.time()
    while time.time() - started < timeout:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return time.time() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not come back within {timeout} s")


@pytest.mark.timeout(1200)
def test_the_api_and_the_model_server_come_back_under_the_supervisor(stack, api, make_user, airflow, model_server, supervised):
    model_server.faults(latency_s={"bitbuddies/cartoonize": 3.0, "bitbuddies/animate": 3.0})
    key = make_user(tokens=2)
    gids = start_generations(api, key, 2)
    wait_for_state(airflow, gids[0], "cartoonize", {"running", "deferred"})
    kill_service(stack, "api")
    back = wait_answering(f"{stack.cfg.api_url}/docs")
    print(f"API killed mid-generation: answering again after {back:.1f} s")
    wait_for_state(airflow, gids[0], "animate", {"running", "deferred"})
    kill_service(stack, "model-server")
    back = wait_answering(f"{stack.cfg.model_server_url}/healthz")
    print(f"model server killed mid-job: answering again after {back:.1f} s")
    finals = [wait_for_generation(api, key, gid, timeout=600) for gid in gids]
    assert [g["status"] for g in finals] == ["succeeded"] * 2, [(g["id"], g["status"], g.get("error")) for g in finals]
    assert supervised.services["api"].restarts == 1 and supervised.services["model-server"].restarts == 1
    assert_ledger_audit_clean(stack)
