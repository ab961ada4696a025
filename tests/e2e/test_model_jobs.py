"""Model jobs over the real stack: never submitted twice whatever dies, and capped by their pool.

- Four generations, each with its task process killed (-9) while it holds a submitted job: half
  while waiting for the submit answer (the job exists at the provider but the task has not stored
  it yet: the Idempotency-Key closes that window), half while fetching the result of a finished
  job (the retry re-attaches to the job stored in ``task_state_store``). All succeed, and the model
  server saw exactly one job per generation and stage.
- Pool ``model_local`` at 2 slots and four concurrent generations: never more than 2 jobs in flight
  at the model server (``max_outstanding``), all succeed.
- Triggerer failover: the triggerer is killed while it waits for a job and started again; the
  run completes and no job is submitted twice.

The model server's answer-delay and latency faults make each window long enough to hit.
"""

from __future__ import annotations

import io
import time
from collections import defaultdict

import httpx
import psutil
import pytest
from PIL import Image
from skimage import data

from include.generations import GENERATE_DAG_ID
from tests.e2e.conftest import wait_for_generation

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

DAG_ID = GENERATE_DAG_ID
MODEL_STAGES = ("moderate", "analyze", "cartoonize", "expand_full_body", "segment_image", "animate", "segment_video")


def small_photo(side: int = 384) -> bytes:
    """The astronaut at 384 px: every stage is quick, so the test time goes to what is tested."""
    img = Image.fromarray(data.astronaut()).resize((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class Airflow:
    """Airflow's REST API v2 as the admin."""

    def __init__(self, stack):
        self.http = httpx.Client(
            base_url=f"{stack.cfg.airflow_url}/api/v2",
            headers={"Authorization": f"Bearer {stack.airflow_token()}"},
            timeout=30,
        )

    def task_instances(self, task_id: str, state: str | None = None) -> list[dict]:
        params = {"task_id": task_id, "limit": 500}
        if state:
            params["state"] = state
        resp = self.http.get(f"/dags/{DAG_ID}/dagRuns/~/taskInstances", params=params)
        resp.raise_for_status()
        return resp.json()["task_instances"]

    def set_pool_slots(self, pool: str, slots: int) -> None:
        # The body is validated as a whole pool: name and include_deferred come along with the slots.
        current = self.http.get(f"/pools/{pool}").json()
        body = {"pool": pool, "slots": slots, "include_deferred": current["include_deferred"]}
        resp = self.http.patch(f"/pools/{pool}", params={"update_mask": "slots"}, json=body)
        assert resp.status_code == 200, resp.text

    def pool_slots(self, pool: str) -> int:
        return self.http.get(f"/pools/{pool}").json()["slots"]

    def run_state(self, run_id: str) -> str:
        return self.http.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]


class ModelServer:
    def __init__(self, stack):
        self.http = httpx.Client(base_url=stack.cfg.model_server_url, timeout=30)

    def faults(self, **config) -> None:
        self.http.post("/_admin/faults", json=config).raise_for_status()

    def reset(self) -> None:
        self.http.post("/_admin/reset").raise_for_status()

    def stats(self) -> dict:
        return self.http.get("/_admin/stats").json()


@pytest.fixture
def airflow(stack):
    client = Airflow(stack)
    yield client
    client.http.close()


@pytest.fixture
def model_server(stack):
    server = ModelServer(stack)
    server.faults()
    server.reset()
    yield server
    server.faults()
    server.http.close()


def start_generations(api, key: str, count: int, prompt: str = "wave hello") -> list[str]:
    photo = small_photo()
    ids = []
    for _ in range(count):
        resp = api.post(
            "/api/generations",
            headers={"Authorization": f"Bearer {key}"},
            files={"image": ("photo.jpg", photo, "image/jpeg")},
            data={"prompt": prompt},
        )
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])
    return ids


def task_process(ti_id: str) -> psutil.Process | None:
    """The task's own process: the task runner names itself ``airflow worker -- <ti id>``."""
    wanted = f"airflow worker -- {ti_id}"
    for proc in psutil.process_iter(["cmdline"]):
        if " ".join(proc.info["cmdline"] or []).startswith(wanted):
            return proc
    return None


def jobs_per_stage(submissions: list[dict], run_ids: list[str]) -> dict[tuple[str, str], dict]:
    """(run, task) -> {"jobs": distinct request ids, "keys": keys used, "replays": count}."""
    record: dict[tuple[str, str], dict] = defaultdict(lambda: {"jobs": set(), "keys": set(), "replays": 0})
    for sub in submissions:
        dag, run, task, _map, _n = sub["idempotency_key"].split(":")
        if dag == DAG_ID and run in run_ids:
            entry = record[(run, task)]
            entry["jobs"].add(sub["request_id"])
            entry["keys"].add(sub["idempotency_key"])
            entry["replays"] += sub["replay"]
    return record


def assert_one_job_per_generation_and_stage(stats: dict, run_ids: list[str]) -> dict:
    record = jobs_per_stage(stats["submissions"], run_ids)
    for run in run_ids:
        stages = {task for (r, task) in record if r == run}
        assert {"moderate", "analyze", "cartoonize", "segment_image", "animate", "segment_video"} <= stages, stages
    for (run, task), entry in record.items():
        assert len(entry["jobs"]) == 1, f"{run} {task} was submitted as {len(entry['jobs'])} jobs: {entry}"
        assert all(key.endswith(":1") for key in entry["keys"]), entry
    return record


def test_killed_task_processes_never_submit_a_job_twice(stack, api, make_user, airflow, model_server):
    # Submit answers of cartoonize and result answers of segment-image are held for a while:
    # the task process then sits on a job it has not stored yet (submit) or already stored (fetch).
    model_server.faults(
        submit_answer_delay_s={"bitbuddies/cartoonize": 12.0},
        result_answer_delay_s={"bitbuddies/segment-image": 12.0},
    )
    # Two generations per window: each window is held open by the fault, so every kill lands in it.
    key = make_user(tokens=4)
    gids = start_generations(api, key, 4)
    in_submit, in_fetch = set(gids[:2]), set(gids[2:])
    killed: dict[str, str] = {}  # generation -> window it was killed in
    deadline = time.time() + 600
    while len(killed) < len(gids) and time.time() < deadline:
        stats = model_server.stats()
        submitted = {s["idempotency_key"]: s["request_id"] for s in stats["submissions"]}
        finished = {j["request_id"] for j in stats["jobs"]}
        for task_id, targets, window in (("cartoonize", in_submit, "submit"), ("segment_image", in_fetch, "fetch")):
            for ti in airflow.task_instances(task_id, state="running"):
                run = ti["dag_run_id"]
                if run not in targets or run in killed or ti["try_number"] != 1:
                    continue
                request_id = submitted.get(f"{DAG_ID}:{run}:{task_id}:-1:1")
                if request_id is None:
                    continue  # not submitted yet: nothing held
                if window == "fetch" and request_id not in finished:
                    continue  # still the first try's submit/defer phase
                proc = task_process(ti["id"])
                if proc is None:
                    continue
                if window == "fetch" and time.time() - proc.create_time() < 2.0:
                    continue  # let the resumed process get past start-up into the held fetch
                proc.kill()
                killed[run] = window
        time.sleep(0.3)
    assert len(killed) == len(gids), f"only killed {killed}"

    finished_gens = [wait_for_generation(api, key, gid, timeout=600) for gid in gids]
    assert [g["status"] for g in finished_gens] == ["succeeded"] * len(gids), [
        (g["id"], g["status"], g.get("error")) for g in finished_gens
    ]
    # Every killed task was retried: its try number went up.
    for task_id, targets in (("cartoonize", in_submit), ("segment_image", in_fetch)):
        tries = {ti["dag_run_id"]: ti["try_number"] for ti in airflow.task_instances(task_id) if ti["dag_run_id"] in targets}
        assert all(t >= 2 for t in tries.values()) and len(tries) == len(targets), tries

    record = assert_one_job_per_generation_and_stage(model_server.stats(), gids)
    # The retries killed in the submit window came back with the same key and got the same job.
    assert all(record[(gid, "cartoonize")]["replays"] >= 1 for gid in in_submit)


def test_a_pool_of_two_caps_jobs_in_flight(stack, api, make_user, airflow, model_server):
    original = airflow.pool_slots("model_local")
    airflow.set_pool_slots("model_local", 2)
    try:
        model_server.reset()
        # Four generations offer eight model jobs at once (moderate and analyze each): the cap is met.
        key = make_user(tokens=4)
        gids = start_generations(api, key, 4, prompt="dance")
        finished = [wait_for_generation(api, key, gid, timeout=900) for gid in gids]
        stats = model_server.stats()
    finally:
        airflow.set_pool_slots("model_local", original)
    assert [g["status"] for g in finished] == ["succeeded"] * 4, [(g["id"], g.get("error")) for g in finished]
    assert stats["max_outstanding"] <= 2, stats["max_outstanding"]
    # The cap was reached, not merely respected by an idle system.
    assert stats["max_outstanding"] == 2
    assert_one_job_per_generation_and_stage(stats, gids)


def test_triggerer_failover_during_a_wait(stack, api, make_user, airflow, model_server):
    # animate takes 20 s more than usual: time to kill the triggerer while it waits on the job.
    model_server.faults(latency_s={"bitbuddies/animate": 20.0})
    key = make_user(tokens=1)
    (gid,) = start_generations(api, key, 1)
    deadline = time.time() + 300
    while not any(ti["dag_run_id"] == gid for ti in airflow.task_instances("animate", state="deferred")):
        assert time.time() < deadline, "animate never deferred"
        time.sleep(0.5)
    stack.kill("triggerer")
    time.sleep(2)
    stack.start_one("triggerer")
    # The new triggerer takes over the orphaned trigger once the old one's heartbeat is stale.
    gen = wait_for_generation(api, key, gid, timeout=600)
    assert gen["status"] == "succeeded", gen
    assert airflow.run_state(gid) in ("success", "running")  # the refund teardown may still be finishing
    assert_one_job_per_generation_and_stage(model_server.stats(), [gid])
