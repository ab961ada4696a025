"""Benchmark: one photo end to end through the real platform, and where the time goes.

Run: ``make bench`` (or ``.venv/bin/python -m bench.bench_pipeline [--runs 3]``).

Starts the whole stack (as `make up` does, on private ports under ``var/bench``), sends a
1024-px photo through ``POST /api/generations`` ``--runs`` times one after the other, and prints:
- end-to-end latency, submit -> ``succeeded`` (median; target <= 20 s on 2 cores);
- compute per stage as the model server measured it (median per model);
- orchestration overhead = end to end minus model compute minus transcode;
- the gap between one task's end and the next task's start, from Airflow's task instances
  (median over all consecutive pairs; target <= 0.4 s, Airflow's defaults give ~0.9 s).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from include.generations import GENERATE_DAG_ID  # noqa: E402
from ops.stack import Stack, StackConfig, environment, initialise  # noqa: E402

DAG_ID = GENERATE_DAG_ID


def photo_1024() -> bytes:
    import io

    img = Image.fromarray(data.astronaut()).resize((1024, 1024), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def task_gaps(stack: Stack, run_id: str) -> tuple[list[float], dict[str, float]]:
    headers = {"Authorization": f"Bearer {stack.airflow_token()}"}
    url = f"{stack.cfg.airflow_url}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances"
    tis = httpx.get(url, headers=headers, params={"limit": 100}, timeout=30).json()["task_instances"]
    by_id = {ti["task_id"]: ti for ti in tis}
    durations = {ti["task_id"]: ti.get("duration") or 0.0 for ti in tis}
    # Gaps along the dependency chain: each task's start minus the latest end of its upstream tasks.
    tasks = httpx.get(f"{stack.cfg.airflow_url}/api/v2/dags/{DAG_ID}/tasks", headers=headers, timeout=30).json()["tasks"]
    upstream: dict[str, list[str]] = {}
    for task in tasks:
        for down in task["downstream_task_ids"]:
            upstream.setdefault(down, []).append(task["task_id"])
    gaps = []
    for task_id, ups in upstream.items():
        ti = by_id.get(task_id)
        if not ti or ti["state"] != "success" or not ti.get("start_date") or task_id == "refund_token":
            continue
        ends = [parse_time(by_id[u]["end_date"]) for u in ups if u in by_id and by_id[u]["state"] == "success"]
        if ends:
            gaps.append(parse_time(ti["start_date"]) - max(ends))
    return gaps, durations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    var = ROOT / "var" / "bench"
    shutil.rmtree(var, ignore_errors=True)
    cfg = StackConfig(var_dir=var, airflow_port=18180, api_port=18100, model_server_port=18300)
    print("starting the stack...", flush=True)
    initialise(cfg)
    stack = Stack(cfg)
    stack.start()
    try:
        stack.wait_ready(timeout=300)
        key = subprocess.run(
            [sys.executable, "-m", "api.cli", "user", "create", "bench@example.com", "--tokens", str(args.runs + 1)],
            env=environment(cfg), capture_output=True, text=True, check=True,
        ).stdout.strip().split()[-1]
        api = httpx.Client(base_url=cfg.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        photo = photo_1024()
        latencies, all_gaps, transcode_s, compute_per_run = [], [], [], []
        httpx.post(f"{cfg.model_server_url}/_admin/reset").raise_for_status()
        for i in range(args.runs):
            t0 = time.time()
            gen = api.post("/api/generations", files={"image": ("p.jpg", photo, "image/jpeg")}, data={"prompt": "wave hello"}).json()
            while True:
                state = api.get(f"/api/generations/{gen['id']}").json()
                if state["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.1)
            latency = time.time() - t0
            if state["status"] != "succeeded":
                print(f"run {i}: FAILED: {state['error']}")
                return 1
            latencies.append(latency)
            time.sleep(1.5)  # let the teardown finish so task instances are final
            gaps, durations = task_gaps(stack, gen["id"])
            all_gaps.extend(gaps)
            transcode_s.append(durations.get("transcode", 0.0))
            print(f"run {i}: {latency:.1f} s end to end, median gap {statistics.median(gaps):.2f} s", flush=True)
        stats = httpx.get(f"{cfg.model_server_url}/_admin/stats").json()
        per_model: dict[str, list[float]] = {}
        for job in stats["jobs"]:
            per_model.setdefault(job["model_id"], []).append(job["compute_seconds"] or 0.0)
        compute_total = sum(sum(v) for v in per_model.values()) / args.runs
    finally:
        stack.stop()

    print("\n== BitBuddies pipeline benchmark ({} runs, 1024-px photo, 2 cores) ==".format(args.runs))
    print(f"end to end (median)            {statistics.median(latencies):6.2f} s   (target <= 20 s)")
    print("model compute per stage (median, as the model server measured it):")
    for model, secs in per_model.items():
        print(f"  {model:32s} {statistics.median(secs):6.2f} s")
    print(f"model compute per run (mean)    {compute_total:6.2f} s")
    print(f"transcode task (median)         {statistics.median(transcode_s):6.2f} s")
    overhead = statistics.median(latencies) - compute_total - statistics.median(transcode_s)
    print(f"orchestration overhead          {overhead:6.2f} s   (end to end - compute - transcode)")
    print(f"task-to-task gap (median)       {statistics.median(all_gaps):6.2f} s   (target <= 0.4 s; n={len(all_gaps)})")
    print(f"task-to-task gap (p90)          {float(np.percentile(all_gaps, 90)):6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
