"""Benchmark: many concurrent model-job waits in one triggerer.

Run: ``.venv/bin/python -m bench.bench_triggerer [--waits 500] [--poll-interval 2]``.

Starts Airflow (api-server, scheduler, dag-processor, one triggerer) and the model server under
``var/bench_triggerer`` with the benchmark's own DAG folder (``bench/triggerer_dags``): one
``ModelJobOperator`` mapped over ``--waits`` selftest jobs. Two long "blocker" jobs occupy the
model server's two workers first, so every benchmark job stays queued (held open) and every task
defers. With all waits deferred it samples, for ``--hold`` seconds:

- worker slots used by waiting: task instances *running* (REST) and live task processes
  (``airflow worker -- <ti id>``) while all waits are deferred (target 0);
- the triggerer's resident memory, process tree, psutil RSS (target <= 300 MB).

Then it cancels the blockers; the jobs run (a few ms each) and it measures, per job, from the
moment the model server finished it to the moment its task left ``deferred`` (the trigger fired
and the task is scheduled to resume; sampled every ~0.25 s) and to the end of the resumed task
(median and p95; target p95 <= poll interval + 1 s for the first).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops.stack import Stack, StackConfig, initialise  # noqa: E402

DAG_ID = "bench_wait_for_jobs"
SELFTEST = "bitbuddies/selftest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def task_processes() -> int:
    count = 0
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        # Task runners name themselves "airflow worker -- <ti uuid>"; idle executor workers differ.
        if cmd.startswith("airflow worker -- ") and "LocalExecutor" not in cmd:
            count += 1
    return count


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=500)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--hold", type=float, default=20.0, help="seconds to sample while every wait is deferred")
    args = parser.parse_args()

    var = ROOT / "var" / "bench_triggerer"
    shutil.rmtree(var, ignore_errors=True)
    cfg = StackConfig(
        var_dir=var,
        airflow_port=free_port(),
        api_port=free_port(),
        model_server_port=free_port(),
        extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "bench" / "triggerer_dags"),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(args.waits + 10),
            "BENCH_WAITS": str(args.waits),
            "BENCH_POLL_INTERVAL": str(args.poll_interval),
        },
    )
    print(f"starting the stack under {var} ...", flush=True)
    initialise(cfg)
    stack = Stack(cfg)
    stack.start(["model-server", "api-server", "scheduler", "dag-processor", "triggerer"])
    model = httpx.Client(base_url=cfg.model_server_url, timeout=30)
    try:
        deadline = time.time() + 300
        for url in (f"{cfg.model_server_url}/healthz", f"{cfg.airflow_url}/api/v2/monitor/health"):
            while True:
                stack.check_alive()
                try:
                    if httpx.get(url, timeout=2).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline:
                    raise TimeoutError(url)
                time.sleep(0.5)
        stack.wait_for_dags([DAG_ID], deadline)
        af = httpx.Client(
            base_url=f"{cfg.airflow_url}/api/v2",
            headers={"Authorization": f"Bearer {stack.airflow_token()}"},
            timeout=60,
        )

        def count(state: str) -> int:
            resp = af.get(f"/dags/{DAG_ID}/dagRuns/~/taskInstances", params={"state": state, "limit": 1})
            return resp.json()["total_entries"]

        # Occupy both model workers: the benchmark's jobs then stay IN_QUEUE until released.
        blockers = [model.post(f"/{SELFTEST}", json={"seconds": 3600}).json() for _ in range(2)]
        model.post("/_admin/reset").raise_for_status()
        run_id = f"bench_{int(time.time())}"
        af.post(f"/dags/{DAG_ID}/dagRuns", json={"dag_run_id": run_id, "logical_date": None}).raise_for_status()
        t0 = time.time()
        print(f"triggered {args.waits} waits; waiting for all of them to defer ...", flush=True)
        while (deferred := count("deferred")) < args.waits:
            if time.time() - t0 > 1800:
                raise TimeoutError(f"only {deferred} of {args.waits} deferred after 30 min")
            time.sleep(2)
        ramp = time.time() - t0
        print(f"all {args.waits} deferred after {ramp:.0f} s; sampling for {args.hold:.0f} s", flush=True)

        triggerer_pid = stack.procs["triggerer"].pid
        rss, running, processes = [], [], []
        hold_end = time.time() + args.hold
        while time.time() < hold_end:
            rss.append(tree_rss(triggerer_pid))
            running.append(count("running"))
            processes.append(task_processes())
            time.sleep(1.0)
        still_deferred = count("deferred")

        # Release: the blockers go, the queued jobs run in a few seconds.
        for blocker in blockers:
            model.put(blocker["cancel_url"]).raise_for_status()
        left_deferred: dict[int, float] = {}
        release = time.time()
        while len(left_deferred) < args.waits and time.time() - release < 600:
            resp = af.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait/listMapped",
                          params={"state": "deferred", "limit": args.waits + 10})
            now = time.time()
            waiting = {ti["map_index"] for ti in resp.json()["task_instances"]}
            for index in range(args.waits):
                if index not in waiting and index not in left_deferred:
                    left_deferred[index] = now
            rss.append(tree_rss(triggerer_pid))
            time.sleep(0.25)
        while af.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"] not in ("success", "failed"):
            if time.time() - release > 900:
                raise TimeoutError("the run did not finish")
            time.sleep(2)
        tis = af.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait/listMapped",
                     params={"limit": args.waits + 10}).json()["task_instances"]
        stats = model.get("/_admin/stats").json()
    finally:
        model.close()
        stack.stop()

    request_of = {}
    for sub in stats["submissions"]:
        key = sub["idempotency_key"] or ""
        if key.startswith(f"{DAG_ID}:"):
            request_of[int(key.split(":")[3])] = sub["request_id"]
    done_at = {job["request_id"]: job["finished_at"] for job in stats["jobs"]}
    end_of = {ti["map_index"]: parse_time(ti["end_date"]) for ti in tis}
    succeeded = sum(ti["state"] == "success" for ti in tis)
    to_fired, to_finished = [], []
    for index, rid in request_of.items():
        if rid in done_at and index in left_deferred:
            to_fired.append(left_deferred[index] - done_at[rid])
        if rid in done_at and end_of.get(index):
            to_finished.append(end_of[index] - done_at[rid])

    mb = 1024 * 1024
    print(f"\n== Triggerer benchmark: {args.waits} concurrent waits, poll interval {args.poll_interval} s, 2 cores ==")
    print(f"time for all waits to defer        {ramp:7.1f} s")
    print(f"deferred while held                {still_deferred:7d}    (of {args.waits})")
    print(f"task instances running, waiting    {max(running):7d}    (max over {len(running)} samples; target 0)")
    print(f"task processes alive, waiting      {max(processes):7d}    (max; target 0)")
    print(f"triggerer RSS, process tree        {max(rss) / mb:7.1f} MB (max; median {statistics.median(rss) / mb:.1f} MB; target <= 300 MB)")
    print(f"job done -> task out of deferred   median {statistics.median(to_fired):5.2f} s   p95 {pct(to_fired, 95):5.2f} s"
          f"   (n={len(to_fired)}; target p95 <= {args.poll_interval + 1:.1f} s; sampled every ~0.25 s)")
    print(f"job done -> resumed task finished  median {statistics.median(to_finished):5.2f} s   p95 {pct(to_finished, 95):5.2f} s"
          f"   (n={len(to_finished)}; includes scheduling and task start-up)")
    print(f"tasks succeeded                    {succeeded:7d}    (of {args.waits})")
    return 0 if succeeded == args.waits else 1


if __name__ == "__main__":
    sys.exit(main())
