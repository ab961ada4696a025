"""Money under chaos, over the real stack: kills, restarts and failing model jobs, then the ledger audit.

Six generations for one user while: 20 concurrent submissions share one Idempotency-Key; 30 % of
animate jobs fail at the provider; a task process is killed -9 during the charge task, during a
model stage and during the refund task; the triggerer is killed during model waits; the scheduler
is killed -9 and restarted. Afterwards every generation is charged once per attempt, refunded at
most once and refunded if and only if it failed; the balance equals grants minus succeeded
generations; a failed, refunded run cleared by an operator refuses to run again; and
``bitbuddies ledger audit`` over the stack's database reports 0 violations.

Finding a task's process: the task-sdk runs each task in a child of the LocalExecutor worker
whose process title is ``airflow worker -- {task instance id}`` (task_runner.py); the id comes
from the REST API.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import psutil
import pytest
from skimage import data

from include.generations import GENERATE_DAG_ID
from ops.stack import environment
from tests.e2e.conftest import jpeg_bytes, wait_for_generation

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

DAG = GENERATE_DAG_ID


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(api, key, photo: bytes, prompt: str, headers: dict | None = None) -> httpx.Response:
    return api.post(
        "/api/generations",
        headers={**auth(key), **(headers or {})},
        files={"image": ("photo.jpg", photo, "image/jpeg")},
        data={"prompt": prompt},
    )


class Airflow:
    def __init__(self, stack):
        self.url = stack.cfg.airflow_url
        self.headers = {"Authorization": f"Bearer {stack.airflow_token()}"}

    def get(self, path: str) -> dict:
        # Polling: a slow answer on a loaded machine is a missed poll, not a failure.
        try:
            return httpx.get(f"{self.url}/api/v2{path}", headers=self.headers, timeout=30).json()
        except httpx.TimeoutException:
            return {}

    def task(self, gid: str, task_id: str) -> dict:
        return self.get(f"/dags/{DAG}/dagRuns/{gid}/taskInstances/{task_id}")

    def run_state(self, gid: str) -> str:
        return self.get(f"/dags/{DAG}/dagRuns/{gid}").get("state", "?")


def task_process(ti_id: str) -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline"]):
        if f"airflow worker -- {ti_id}" in " ".join(proc.info["cmdline"] or []):
            return proc
    return None


def kill_task_when_running(airflow: Airflow, gid: str, task_ids: tuple[str, ...], timeout: float = 240) -> str | None:
    """kill -9 the process of the first of ``task_ids`` seen running for ``gid``; returns its task id."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for task_id in task_ids:
            ti = airflow.task(gid, task_id)
            if ti.get("state") == "running" and ti.get("id"):
                proc = task_process(ti["id"])
                if proc is not None:
                    proc.kill()
                    return task_id
        time.sleep(0.05)
    return None


def ledger_rows(stack) -> list[tuple]:
    with sqlite3.connect(stack.cfg.var_dir / "app.db") as db:
        return db.execute("SELECT generation_id, reason, amount, idempotency_key, refund_of, id FROM ledger_entry").fetchall()


def audit(stack) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "ledger", "audit"], env=environment(stack.cfg), capture_output=True, text=True
    )


def test_money_is_right_after_kills_restarts_and_failing_jobs(stack, api, make_user):
    airflow = Airflow(stack)
    key = make_user(tokens=10)
    user_balance = lambda: api.get("/api/me", headers=auth(key)).json()["balance"]  # noqa: E731
    astronaut = jpeg_bytes(data.astronaut())
    y, x = np.mgrid[0:600, 0:800]
    wall = jpeg_bytes(np.clip(np.dstack([200 + x / 40, 190 + y / 30, np.full(x.shape, 170.0)]), 0, 255).astype(np.uint8))
    httpx.post(f"{stack.cfg.model_server_url}/_admin/faults", json={"fail_rate": {"bitbuddies/animate": 0.3}}).raise_for_status()
    kills: list[str] = []
    old_scheduler = None
    try:
        # 20 concurrent submissions with one Idempotency-Key: one generation, one charge.
        barrier = threading.Barrier(20)
        answers: list[httpx.Response] = []

        def same_key():
            barrier.wait()
            answers.append(submit(api, key, astronaut, "wave", {"Idempotency-Key": "chaos-same-photo"}))

        threads = [threading.Thread(target=same_key) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {r.status_code for r in answers} == {202} and len({r.json()["id"] for r in answers}) == 1
        gids = [answers[0].json()["id"]]

        charge_victim = submit(api, key, astronaut, "jump").json()["id"]
        gids.append(charge_victim)
        kills.append(f"charge: {kill_task_when_running(airflow, charge_victim, ('charge_token',), timeout=60)}")

        model_victim = submit(api, key, astronaut, "dance").json()["id"]
        refund_victim = submit(api, key, wall, "bounce").json()["id"]  # no subject: fails fast, refunded
        gids += [model_victim, refund_victim]
        gids += [submit(api, key, astronaut, p).json()["id"] for p in ("sway", "wave hello")]

        kills.append(f"model: {kill_task_when_running(airflow, model_victim, ('moderate', 'analyze', 'cartoonize', 'segment_image'))}")
        kills.append(f"refund: {kill_task_when_running(airflow, refund_victim, ('refund_token',))}")

        # The triggerer dies during model waits; another one takes the triggers over.
        stack.kill("triggerer")
        stack.start_one("triggerer")
        # The scheduler dies (-9, its process only: its task workers finish what they run) and restarts.
        old_scheduler = stack.procs.pop("scheduler")
        os.kill(old_scheduler.pid, signal.SIGKILL)
        old_scheduler.wait(timeout=30)
        time.sleep(3)
        stack.start_one("scheduler")

        finals = {gid: wait_for_generation(api, key, gid, timeout=900) for gid in gids}
        states = {gid: airflow.run_state(gid) for gid in gids}
        deadline = time.time() + 180
        while any(s not in ("success", "failed") for s in states.values()) and time.time() < deadline:
            time.sleep(2)
            states = {gid: airflow.run_state(gid) for gid in gids}
    finally:
        httpx.post(f"{stack.cfg.model_server_url}/_admin/faults", json={}).raise_for_status()
        if old_scheduler is not None:  # the killed scheduler's orphaned LocalExecutor workers
            try:
                os.killpg(old_scheduler.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    print("kills:", kills, "final:", {g: f["status"] for g, f in finals.items()}, "runs:", states)
    assert sum(not k.endswith("None") for k in kills) >= 2, kills
    assert finals[refund_victim]["status"] == "failed"
    rows = ledger_rows(stack)
    succeeded = 0
    for gid, final in finals.items():
        charges = [r for r in rows if r[0] == gid and r[1] == "charge"]
        refunds = [r for r in rows if r[0] == gid and r[1] == "refund"]
        assert len({c[3] for c in charges}) == len(charges) >= 1, (gid, charges)  # once per attempt
        assert len(refunds) <= len(charges) and len({r[4] for r in refunds}) == len(refunds), (gid, refunds)
        if final["status"] == "failed":
            assert len(refunds) == len(charges) and final["refund_state"] == "refunded", (gid, final)
            assert states[gid] == "failed", (gid, states[gid])
        else:
            assert final["status"] == "succeeded" and refunds == [] and states[gid] == "success", (gid, final, states[gid])
            succeeded += 1
    assert user_balance() == 10 - succeeded

    # An operator clears the failed, refunded run: it refuses to work again and the ledger is unchanged.
    before = ledger_rows(stack)
    cleared = httpx.post(
        f"{airflow.url}/api/v2/dags/{DAG}/clearTaskInstances",
        headers=airflow.headers,
        json={"dry_run": False, "dag_run_id": refund_victim, "only_failed": False, "reset_dag_runs": True},
        timeout=30,
    )
    assert cleared.status_code == 200, cleared.text
    time.sleep(3)
    deadline = time.time() + 180
    while airflow.run_state(refund_victim) not in ("success", "failed") and time.time() < deadline:
        time.sleep(2)
    assert airflow.run_state(refund_victim) == "failed"
    assert airflow.task(refund_victim, "charge_token")["state"] == "failed"
    assert set(ledger_rows(stack)) == set(before) and user_balance() == 10 - succeeded

    result = audit(stack)
    print(result.stdout)
    assert result.returncode == 0 and "0 violations" in result.stdout, result.stdout + result.stderr
    assert "checked " in result.stdout and " charges, " in result.stdout
