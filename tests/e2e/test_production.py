"""The production configuration, natively: Postgres, CeleryExecutor with two workers by queue, S3.

Four concurrent generations run through the stack in its production profile (ops/stack.py) while
the default-queue Celery worker is killed with SIGKILL and a replacement started. Then a worker
takes a task from the broker and cannot start it: while the worker lives the task is left queued
past ``task_queued_timeout`` (slow is not lost); once the worker dies the task runs again within a
minute. Every generation must succeed with no model job paid twice, the ledger must hold its
invariants, every asset must be in the S3 bucket, and the media work must have run only on the
media-queue worker.

The stack has its own databases (``bb_<pid>_airflow``, ``bb_<pid>_app``), Redis key prefix and S3
server (moto), all dropped afterwards. Needs the machine's Postgres and Redis: skips locally when
they are absent, fails under CI=true.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image
from skimage import data

from include.generations import GENERATE_DAG_ID
from include.media.transcode import OUTPUT_NAMES
from ops.stack import (
    LOAD_TEST_LIMITS,
    S3_ACCESS_KEY,
    S3_REGION,
    S3_SECRET_KEY,
    Stack,
    celery_worker_argv,
    discard_production_data,
    environment,
    initialise,
    local_production_config,
)
from tests.e2e.conftest import free_port, jpeg_bytes, wait_for_generation
from tests.services import postgres_server_url, redis_server_url

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

# Enough for tasks of several generations on the default worker when it is killed, for its
# replacement to take over and for the one media worker to queue transcodes (each also encodes the
# walk loop); bench.bench_production measures 20 and more.
GENERATIONS = 4
DAG = GENERATE_DAG_ID
# The encodes: WebM and poster before publishing, the fallback formats and the walk loop after.
MEDIA_TASKS = {"transcode", "encode_fallbacks"}
MODEL_STAGES = {"moderate", "analyze", "cartoonize", "expand_full_body", "segment_image", "animate", "segment_video"}
VAR_DIR = Path(__file__).resolve().parents[2] / "var" / "e2e" / f"{os.getpid()}-production"


@pytest.fixture(scope="module")
def production_stack():
    postgres = postgres_server_url()
    redis = redis_server_url()
    cfg = local_production_config(
        VAR_DIR,
        f"bb_{os.getpid()}",
        postgres,
        f"{redis}/0",
        airflow_port=free_port(),
        api_port=free_port(),
        model_server_port=free_port(),
        s3_port=free_port(),
        # A killed worker's tasks are noticed after 40 s, its unstarted ones after 40 s (the profile's
        # RECOVERY_SETTINGS, parallelism = the workers' slots).
        extra_env=dict(LOAD_TEST_LIMITS),
    )
    running = Stack(cfg)
    try:
        initialise(cfg)
        running.start()
        running.wait_ready(timeout=300)
        yield running
    finally:
        running.stop()
        discard_production_data(cfg)
        if os.environ.get("CI"):
            for log in sorted(cfg.log_dir.glob("*.log")):
                print(f"----- {log.name} (tail) -----\n{log.read_text(errors='replace')[-3000:]}")


def small_photo() -> bytes:
    """The astronaut at 384 px: a real person, small enough for 20 generations in a few minutes."""
    return jpeg_bytes(np.asarray(Image.fromarray(data.astronaut()).resize((384, 384), Image.LANCZOS)))


def create_user(stack: Stack, tokens: int) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "user", "create", f"prod{time.time_ns()}@example.com", "--tokens", str(tokens)],
        env=environment(stack.cfg),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return re.search(r"bb_[A-Za-z0-9_\-]+", out).group(0)


def task_instances(stack: Stack, headers: dict, **query) -> list[dict]:
    """Every task instance of the DAG matching ``query``, page by page (the API caps a page at 100)."""
    found: list[dict] = []
    while True:
        resp = httpx.get(
            f"{stack.cfg.airflow_url}/api/v2/dags/{DAG}/dagRuns/~/taskInstances",
            params={"limit": 100, "offset": len(found), "order_by": "id", **query},
            headers=headers,
            timeout=30,
        )
        resp.raise_for_status()
        body = resp.json()
        found += body["task_instances"]
        if not body["task_instances"] or len(found) >= body["total_entries"]:
            return found


def wait_for_running_task(stack: Stack, headers: dict, hostname: str, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for ti in task_instances(stack, headers, state="running"):
            if ti["hostname"] == hostname:
                return ti
        time.sleep(0.5)
    raise AssertionError(f"no task ran on {hostname} within {timeout} s")


def wait_for_runs_to_finish(stack: Stack, headers: dict, run_ids: list[str], timeout: float = 120) -> None:
    """The refund teardown may still run after a generation is done: wait for every run's final state."""
    deadline = time.time() + timeout
    for run_id in run_ids:
        while True:
            run = httpx.get(f"{stack.cfg.airflow_url}/api/v2/dags/{DAG}/dagRuns/{run_id}", headers=headers).json()
            if run["state"] in ("success", "failed"):
                assert run["state"] == "success", run
                break
            assert time.time() < deadline, f"run {run_id} still {run['state']}"
            time.sleep(1)


def ledger_audit(stack: Stack) -> subprocess.CompletedProcess:
    """``bitbuddies ledger audit`` over the stack's app DB (Postgres)."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "ledger", "audit"], env=environment(stack.cfg), capture_output=True, text=True
    )


def test_concurrent_generations_survive_a_killed_worker(production_stack):
    stack = production_stack
    cfg = stack.cfg
    key = create_user(stack, tokens=GENERATIONS)
    auth = {"Authorization": f"Bearer {key}"}
    headers = {"Authorization": f"Bearer {stack.airflow_token()}"}
    httpx.post(f"{cfg.model_server_url}/_admin/reset").raise_for_status()
    photo = small_photo()

    with httpx.Client(base_url=cfg.api_url, timeout=60) as api:
        gids = []
        for i in range(GENERATIONS):
            resp = api.post(
                "/api/generations",
                headers=auth,
                files={"image": ("photo.jpg", photo, "image/jpeg")},
                data={"prompt": ["wave hello", "jump", "dance", "sway"][i % 4]},
            )
            assert resp.status_code == 202, resp.text
            gids.append(resp.json()["id"])

        # Kill -9 the default-queue worker while it runs a task, then start a replacement.
        victim = wait_for_running_task(stack, headers, "worker-default")
        stack.kill("worker-default")
        stack.start_one("worker-default-2", celery_worker_argv("default", "worker-default-2", cfg.default_worker_concurrency))
        print(f"killed worker-default while it ran {victim['task_id']} of {victim['dag_run_id']}")

        done = [wait_for_generation(api, key, gid, timeout=900) for gid in gids]
        assert [g["status"] for g in done] == ["succeeded"] * GENERATIONS, [g for g in done if g["status"] != "succeeded"]
        assert api.get("/api/me", headers=auth).json()["balance"] == 0
    wait_for_runs_to_finish(stack, headers, gids)

    # No model job submitted twice: per generation and stage one new submission, under the first key.
    stats = httpx.get(f"{cfg.model_server_url}/_admin/stats").json()
    fresh = [s["idempotency_key"] for s in stats["submissions"] if not s["replay"]]
    per_stage = Counter(tuple(k.split(":")[1:3]) for k in fresh)
    assert {n for n in per_stage.values()} == {1}, [k for k, n in per_stage.items() if n > 1]
    assert all(k.endswith(":1") for k in fresh), [k for k in fresh if not k.endswith(":1")]
    assert {run for run, _ in per_stage} == set(gids)
    assert {stage for _, stage in per_stage} <= MODEL_STAGES

    audit = ledger_audit(stack)
    assert audit.returncode == 0 and "\n0 violations" in audit.stdout, audit.stdout + audit.stderr

    # Every asset is in the bucket.
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=cfg.s3_url, aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY, region_name=S3_REGION
    )
    keys = {o["Key"]: o["Size"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cfg.s3_bucket) for o in page.get("Contents", [])}
    for gid in gids:
        for name in OUTPUT_NAMES.values():
            assert keys.get(f"assets/generations/{gid}/{name}", 0) > 0, (gid, name, sorted(k for k in keys if gid in k))
        assert any(k.startswith(f"assets/uploads/{gid}/") for k in keys), gid

    # Placement: media tasks only on the media worker, everything else only on default-queue workers.
    tis = [ti for ti in task_instances(stack, headers) if ti["dag_run_id"] in set(gids) and ti["hostname"]]
    media = [ti for ti in tis if ti["task_id"] in MEDIA_TASKS]
    other = [ti for ti in tis if ti["task_id"] not in MEDIA_TASKS]
    assert len(media) == len(MEDIA_TASKS) * GENERATIONS
    assert {(ti["hostname"], ti["queue"]) for ti in media} == {("worker-media", "media")}
    assert {ti["hostname"] for ti in other} <= {"worker-default", "worker-default-2"}
    assert {ti["queue"] for ti in other} == {"default"}
    # The replacement took over work once the first worker was gone.
    assert "worker-default-2" in {ti["hostname"] for ti in other}
    victim_now = [ti for ti in tis if ti["dag_run_id"] == victim["dag_run_id"] and ti["task_id"] == victim["task_id"]]
    assert victim_now and victim_now[0]["state"] == "success"


# The run's first task: the one a frozen worker takes before anything of the run has started.
FIRST_TASK = "charge_token"


def requeues(stack: Stack, headers: dict, gid: str) -> int:
    """How often the scheduler set the first task of ``gid`` back from queued to scheduled."""
    resp = httpx.get(
        f"{stack.cfg.airflow_url}/api/v2/eventLogs",
        params={"dag_id": DAG, "run_id": gid, "task_id": FIRST_TASK, "event": "stuck in queued reschedule"},
        headers=headers,
        timeout=30,
    )
    resp.raise_for_status()
    return resp.json()["total_entries"]


def test_a_task_a_worker_received_but_never_started_waits_while_it_lives_and_runs_again_when_it_dies(production_stack):
    """The window acks_late leaves open: the worker holds the task's message, unacknowledged. While
    the worker lives, the task is slow, not lost: past task_queued_timeout (40 s) it stays queued,
    not revoked (RecoveringCeleryExecutor asks the workers first). When the worker dies, Redis would
    redeliver the message after the visibility timeout (hours); the scheduler revokes and
    reschedules the task at its next check instead, and it runs again within a minute."""
    stack = production_stack
    cfg = stack.cfg
    name = next(n for n in ("worker-default-2", "worker-default") if n in stack.procs)
    headers = {"Authorization": f"Bearer {stack.airflow_token()}"}
    key = create_user(stack, tokens=1)
    httpx.post(f"{cfg.model_server_url}/_admin/reset").raise_for_status()
    # Freeze the worker's pool processes: it still takes the next task from the broker, but no pool
    # process can start it.
    for child in psutil.Process(stack.procs[name].pid).children(recursive=True):
        child.suspend()

    def first_task() -> dict:
        url = f"{cfg.airflow_url}/api/v2/dags/{DAG}/dagRuns/{gid}/taskInstances/{FIRST_TASK}"
        return httpx.get(url, headers=headers, timeout=30).json()

    with httpx.Client(base_url=cfg.api_url, timeout=60) as api:
        resp = api.post(
            "/api/generations",
            headers={"Authorization": f"Bearer {key}"},
            files={"image": ("photo.jpg", small_photo(), "image/jpeg")},
            data={"prompt": "wave hello"},
        )
        assert resp.status_code == 202, resp.text
        gid = resp.json()["id"]
        deadline = time.time() + 120
        while (first := first_task()).get("state") != "queued":
            assert time.time() < deadline, f"{FIRST_TASK} was never queued"
            time.sleep(0.3)
        # Past the timeout and a check (40 s + 5 s, and the workers' answer): held, so left queued.
        deadline = time.time() + 90
        while (held := first_task())["queued_when"] == first["queued_when"]:
            assert held["state"] == "queued", held
            assert time.time() < deadline, f"the stuck-in-queued check never looked at {FIRST_TASK}: {held}"
            time.sleep(1)
        assert held["state"] == "queued" and held["try_number"] == first["try_number"], held
        assert requeues(stack, headers, gid) == 0, "a task a live worker held was revoked and requeued"
        stack.kill(name)
        killed_at = time.time()
        stack.start_one("worker-default-3", celery_worker_argv("default", "worker-default-3", cfg.default_worker_concurrency))
        while first_task()["state"] not in ("running", "success"):
            assert time.time() - killed_at < 60, f"{FIRST_TASK} still {first_task()} 60 s after the kill"
            time.sleep(0.5)
        back = time.time() - killed_at
        assert requeues(stack, headers, gid) == 1  # lost with its worker: revoked and rescheduled once
        gen = wait_for_generation(api, key, gid, timeout=600)
    print(f"worker killed holding an unstarted task: running again {back:.1f} s after the kill")
    assert gen["status"] == "succeeded", gen
    stats = httpx.get(f"{cfg.model_server_url}/_admin/stats").json()
    fresh = Counter(s["idempotency_key"].split(":")[2] for s in stats["submissions"] if gid in s["idempotency_key"] and not s["replay"])
    assert set(fresh.values()) == {1}, fresh
    audit = ledger_audit(stack)
    assert audit.returncode == 0 and "\n0 violations" in audit.stdout, audit.stdout + audit.stderr
