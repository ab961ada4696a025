"""Benchmark: many concurrent model-job waits in one triggerer.

Run: ``.venv/bin/python -m bench.bench_triggerer [--waits 500] [--poll-interval 2] [--job-seconds 0.2]
[--profile production] [--triggerer patched|stock] [--no-status-stream]``.

Starts Airflow (api-server, scheduler, dag-processor, one triggerer; in the production profile,
the default, on Postgres with a Celery worker) and the model server under
``var/bench_triggerer`` with the benchmark's own DAG folder (``bench/triggerer_dags``): one
``ModelJobOperator`` mapped over ``--waits`` selftest jobs. Two long "blocker" jobs occupy the
model server's two workers first, so every benchmark job stays queued (held open) and every task
defers. With all waits deferred it samples, for ``--hold`` seconds:

- worker slots used by waiting: task instances *running* (REST) and live task runner processes
  under the stack's services while all waits are deferred (target 0);
- the triggerer's resident memory: PSS summed over its process tree (the supervisor and its
  trigger-runner child share pages, which an RSS sum counts twice), before and while waiting
  (target <= 300 MB).

Then it cancels the blockers; the jobs run (a few ms each) and it measures, per job, from the
moment the model server finished it to the moment its task left ``deferred`` (the trigger fired
and the task is scheduled to resume: the ``scheduled_dttm`` the triggerer stamps) and to the end
of the resumed task (median and p95; target p95 <= 2 s for the first). The first is split at the
moment the trigger heard the job was done (the model server records when it first told a client):
the provider's share (pushed on fal's status stream; with ``--no-status-stream`` the server refuses
the stream and the triggers poll every ``--poll-interval``, as they did before it), and the
triggerer's.

The embedded profile (SQLite) is for a developer's few generations: with a few hundred tasks
resuming at once, Airflow's own processes wait past SQLite's lock timeout and exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import psutil
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops.stack import VENV_BIN, Stack, StackConfig, discard_production_data, initialise, local_production_config  # noqa: E402

POSTGRES = os.environ.get("BITBUDDIES_BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BITBUDDIES_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

DAG_ID = "bench_wait_for_jobs"
SELFTEST = "bitbuddies/selftest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def as_timestamp(value: datetime | str | None) -> float | None:
    """A metadata-DB timestamp (Postgres: aware datetime; SQLite: UTC text) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def tree_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) summed over the process and its children. RSS counts the pages a forked child
    shares with its parent twice; PSS splits each shared page among its sharers, so the PSS sum
    is what the tree really holds."""
    proc = psutil.Process(pid)
    rss = pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss += info.rss
        pss += info.pss
    return rss, pss


def task_processes(stack: Stack) -> int:
    """Live task runners ("airflow worker -- <ti uuid>") started by this stack's services. Idle
    LocalExecutor workers ("airflow worker -- LocalExecutor: ...") and Celery pool processes
    (which keep the title "airflow supervisor: ..." of their last task) hold no task."""
    count = 0
    for service in stack.procs.values():
        try:
            children = psutil.Process(service.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for proc in children:
            try:
                cmd = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if cmd.startswith("airflow worker -- ") and "LocalExecutor" not in cmd:
                count += 1
    return count


def get_json(client: httpx.Client, url: str, **kwargs) -> dict:
    """GET that rides out the api-server's transient 5xx answers while hundreds of tasks resume."""
    for attempt in range(10):
        resp = client.get(url, **kwargs)
        if resp.status_code < 500:
            resp.raise_for_status()
            return resp.json()
        time.sleep(2)
    resp.raise_for_status()
    return resp.json()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=500)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--hold", type=float, default=20.0, help="seconds to sample while every wait is deferred")
    parser.add_argument("--job-seconds", type=float, default=0.2,
                        help="compute time of each job once released: 0.2 (the model server's two workers finish ~10 "
                             "a second, as a provider's capacity frees up); 0 finishes all of them within a second, "
                             "a stress case: 500 tasks resuming at once on the same two cores")
    parser.add_argument("--profile", choices=("production", "embedded"), default="production",
                        help="production: Postgres and Celery (the machine's Postgres and Redis); embedded: SQLite and "
                             "LocalExecutor, which loses Airflow processes to 'database is locked' at a few hundred waits")
    parser.add_argument("--triggerer", choices=("patched", "stock"), default="patched",
                        help="patched: python -m ops.triggerer (what the stacks run); stock: plain `airflow triggerer`")
    parser.add_argument("--no-status-stream", action="store_true",
                        help="the model server refuses fal's status stream (404): the triggers poll every --poll-interval, "
                             "as before the stream")
    args = parser.parse_args()

    var = ROOT / "var" / f"bench_triggerer_{args.triggerer}"
    shutil.rmtree(var, ignore_errors=True)
    settings = dict(
        airflow_port=free_port(),
        api_port=free_port(),
        model_server_port=free_port(),
        extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "bench" / "triggerer_dags"),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(args.waits + 10),
            "BENCH_WAITS": str(args.waits),
            "BENCH_POLL_INTERVAL": str(args.poll_interval),
            "BENCH_JOB_SECONDS": str(args.job_seconds),
            "BITBUDDIES_MODEL_SERVER_STATUS_STREAM": "0" if args.no_status_stream else "1",
            # The REST API pages at 100 by default; the benchmark reads every map index at once.
            "AIRFLOW__API__MAXIMUM_PAGE_LIMIT": str(args.waits + 10),
        },
    )
    services = ["model-server", "api-server", "scheduler", "dag-processor", "triggerer"]
    if args.profile == "production":
        cfg = local_production_config(var, f"bb_benchtrig_{os.getpid()}", POSTGRES, REDIS, s3_port=free_port(),
                                      default_worker_concurrency=16, **settings)
        services += ["s3", "worker-default"]
    else:
        cfg = StackConfig(var_dir=var, **settings)
    print(f"starting the {cfg.profile} stack under {var} ...", flush=True)
    initialise(cfg)
    stack = Stack(cfg)
    stack.start([name for name in services if name != "triggerer"])
    stock = [str(VENV_BIN / "airflow"), "triggerer", "--skip-serve-logs"]
    stack.start_one("triggerer", stock if args.triggerer == "stock" else None)
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
        triggerer_pid = stack.procs["triggerer"].pid
        idle_rss, idle_pss = tree_memory(triggerer_pid)
        af = httpx.Client(
            base_url=f"{cfg.airflow_url}/api/v2",
            headers={"Authorization": f"Bearer {stack.airflow_token()}"},
            timeout=60,
        )

        def count(state: str) -> int:
            return get_json(af, f"/dags/{DAG_ID}/dagRuns/~/taskInstances", params={"state": state, "limit": 1})["total_entries"]

        # Occupy both model workers: the benchmark's jobs then stay IN_QUEUE until released.
        blockers = [model.post(f"/{SELFTEST}", json={"seconds": 3600}).json() for _ in range(2)]
        model.post("/_admin/reset").raise_for_status()
        run_id = f"bench_{int(time.time())}"
        af.post(f"/dags/{DAG_ID}/dagRuns", json={"dag_run_id": run_id, "logical_date": None}).raise_for_status()
        t0 = time.time()
        print(f"triggered {args.waits} waits; waiting for all of them to defer ...", flush=True)
        while (deferred := count("deferred")) < args.waits:
            stack.check_alive()
            if time.time() - t0 > 1800:
                raise TimeoutError(f"only {deferred} of {args.waits} deferred after 30 min")
            time.sleep(2)
        ramp = time.time() - t0
        print(f"all {args.waits} deferred after {ramp:.0f} s; sampling for {args.hold:.0f} s", flush=True)

        rss, pss, running, processes = [], [], [], []
        hold_end = time.time() + args.hold
        while time.time() < hold_end:
            sample = tree_memory(triggerer_pid)
            rss.append(sample[0])
            pss.append(sample[1])
            running.append(count("running"))
            processes.append(task_processes(stack))
            time.sleep(1.0)
        still_deferred = count("deferred")
        breakdown = []
        for proc in [psutil.Process(triggerer_pid), *psutil.Process(triggerer_pid).children(recursive=True)]:
            info = proc.memory_full_info()
            breakdown.append(f"pid {proc.pid} (parent {proc.ppid()}): PSS {info.pss / 2**20:.1f} MB, RSS {info.rss / 2**20:.1f} MB")

        # Release: the blockers go, the queued jobs run in a few seconds.
        for blocker in blockers:
            model.put(blocker["cancel_url"]).raise_for_status()
        release = time.time()
        while get_json(af, f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"] not in ("success", "failed"):
            if time.time() - release > 900:
                raise TimeoutError("the run did not finish")
            stack.check_alive()
            time.sleep(2)
        tis = get_json(af, f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait/listMapped",
                       params={"limit": args.waits + 10})["task_instances"]
        stats = model.get("/_admin/stats").json()
        # When each task left "deferred": the triggerer stamps scheduled_dttm as it hands the
        # trigger's event to the task instance (Trigger.submit_event), in the same transaction.
        metadata_db = sa.create_engine(cfg.airflow_db_url or f"sqlite:///{cfg.airflow_home / 'airflow.db'}")
        with metadata_db.connect() as db:
            resumed_at = {
                index: as_timestamp(at)
                for index, at in db.execute(
                    sa.text("SELECT map_index, scheduled_dttm FROM task_instance WHERE dag_id = :dag AND run_id = :run"),
                    {"dag": DAG_ID, "run": run_id},
                )
            }
        metadata_db.dispose()
    finally:
        model.close()
        stack.stop()
        if cfg.production:
            discard_production_data(cfg)

    request_of = {}
    for sub in stats["submissions"]:
        key = sub["idempotency_key"] or ""
        if key.startswith(f"{DAG_ID}:"):
            request_of[int(key.split(":")[3])] = sub["request_id"]
    done_at = {job["request_id"]: job["finished_at"] for job in stats["jobs"]}
    end_of = {ti["map_index"]: parse_time(ti["end_date"]) for ti in tis}
    succeeded = sum(ti["state"] == "success" for ti in tis)
    reported_at = {job["request_id"]: job["done_reported_at"] for job in stats["jobs"]}
    to_fired, to_reported, reported_to_fired, to_finished = [], [], [], []
    for index, rid in request_of.items():
        if rid not in done_at:
            continue
        if resumed_at.get(index):
            to_fired.append(resumed_at[index] - done_at[rid])
        if reported_at.get(rid):
            to_reported.append(reported_at[rid] - done_at[rid])
            if resumed_at.get(index):
                reported_to_fired.append(resumed_at[index] - reported_at[rid])
        if end_of.get(index):
            to_finished.append(end_of[index] - done_at[rid])

    mb = 1024 * 1024
    print(f"\n== Triggerer benchmark: {args.waits} concurrent waits, status stream {'off' if args.no_status_stream else 'on'}, poll interval {args.poll_interval} s, "
          f"{cfg.profile} profile, jobs of {args.job_seconds} s, {args.triggerer} triggerer, {os.cpu_count()} cores ==")
    print(f"time for all waits to defer        {ramp:7.1f} s")
    print(f"deferred while held                {still_deferred:7d}    (of {args.waits})")
    print(f"task instances running, waiting    {max(running):7d}    (max over {len(running)} samples; target 0)")
    print(f"task processes alive, waiting      {max(processes):7d}    (max; target 0)")
    print(f"triggerer memory, process tree     {max(pss) / mb:7.1f} MB PSS (max while held; {idle_pss / mb:.1f} MB before any wait; target <= 300 MB)")
    for line in breakdown:
        print(f"                                   {line}")
    print(f"                                   {max(rss) / mb:7.1f} MB RSS sum (counts pages shared by parent and child twice; {idle_rss / mb:.1f} MB before)")
    print(f"job done -> task out of deferred   median {statistics.median(to_fired):5.2f} s   p95 {pct(to_fired, 95):5.2f} s"
          f"   (n={len(to_fired)}; target p95 <= 2.0 s)")
    print(f"  of which: done -> trigger heard  median {statistics.median(to_reported):5.2f} s   p95 {pct(to_reported, 95):5.2f} s"
          f"   (pushed on the status stream; {'a poll interval without it' if args.no_status_stream else 'polled only when it breaks'})")
    print(f"            heard it -> resumed    median {statistics.median(reported_to_fired):5.2f} s   p95 {pct(reported_to_fired, 95):5.2f} s"
          f"   (the triggerer's: the event to its supervisor, stored, the task scheduled)")
    print(f"job done -> resumed task finished  median {statistics.median(to_finished):5.2f} s   p95 {pct(to_finished, 95):5.2f} s"
          f"   (n={len(to_finished)}; includes scheduling and task start-up)")
    print(f"tasks succeeded                    {succeeded:7d}    (of {args.waits})")
    return 0 if succeeded == args.waits else 1


if __name__ == "__main__":
    sys.exit(main())
