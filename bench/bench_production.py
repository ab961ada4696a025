"""Benchmark: throughput at 20 concurrent generations, production profile vs the embedded default.

Run: ``.venv/bin/python -m bench.bench_production [--generations 20] [--size 384]``
(needs the machine's Postgres and Redis for the production profile).

In one run, one profile after the other on the same machine, each on a fresh stack:
- ``embedded``: SQLite, LocalExecutor, file storage (``make up``);
- ``production``: Postgres, CeleryExecutor with a default-queue and a media-queue worker, Redis
  broker, S3 storage on a local S3 server (``ops.stack`` production profile).
``--generations`` photos go in at once through ``POST /api/generations``; the figure is
generations per minute from the first submit to the last success, beside two ceilings:
- CPU ceiling: every core of the machine doing nothing but the model server's work
  (``60 * cores / model-server CPU seconds per generation``, user + system CPU of its process
  tree); ``ratio`` is the throughput over this ceiling: the share of the machine that went into
  the product rather than into orchestration, storage and the web layer.
- compute ceiling: the model server's workers busy all the time for the job time they needed
  (``60 * model_workers / job seconds per generation``, as ``/_admin/stats`` measured it; job time
  stretches when other processes take the CPU).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ops.stack import (  # noqa: E402
    LOAD_TEST_LIMITS,
    Stack,
    StackConfig,
    discard_production_data,
    environment,
    initialise,
    local_production_config,
)

POSTGRES = os.environ.get("BITBUDDIES_BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BITBUDDIES_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PORTS = {"airflow_port": 18480, "api_port": 18400, "model_server_port": 18600}


def photo(size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((size, size), Image.LANCZOS).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children (the model server and its workers)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            # children_*: processes it started and reaped (a stage's short-lived helpers).
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def run_profile(cfg: StackConfig, generations: int, image: bytes) -> dict:
    initialise(cfg)
    stack = Stack(cfg)
    stack.start()
    try:
        stack.wait_ready(timeout=600)
        out = subprocess.run(
            [sys.executable, "-m", "api.cli", "user", "create", f"bench-{cfg.profile}@example.com", "--tokens", str(generations)],
            env=environment(cfg), capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        key = out.strip().split()[-1]
        api = httpx.Client(base_url=cfg.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        httpx.post(f"{cfg.model_server_url}/_admin/reset").raise_for_status()
        model_server_pid = stack.procs["model-server"].pid
        cpu_before = tree_cpu_seconds(model_server_pid)
        t0 = time.time()
        ids = []
        for i in range(generations):
            resp = api.post("/api/generations", files={"image": ("p.jpg", image, "image/jpeg")}, data={"prompt": "wave hello"})
            resp.raise_for_status()
            ids.append(resp.json()["id"])
        pending, failed, finished_at = set(ids), [], {}
        while pending:
            for gid in list(pending):
                state = api.get(f"/api/generations/{gid}").json()
                if state["status"] in ("succeeded", "failed"):
                    pending.discard(gid)
                    finished_at[gid] = time.time() - t0
                    if state["status"] == "failed":
                        failed.append((gid, state.get("error")))
            if time.time() - t0 > 1800:
                raise TimeoutError(f"{len(pending)} generations unfinished after 30 min")
            time.sleep(1)
        wall = max(finished_at.values())
        cpu = tree_cpu_seconds(model_server_pid) - cpu_before
        stats = httpx.get(f"{cfg.model_server_url}/_admin/stats").json()
        compute = sum(job["compute_seconds"] or 0.0 for job in stats["jobs"])
        return {
            "profile": cfg.profile,
            "failed": failed,
            "wall": wall,
            "per_minute": 60 * generations / wall,
            "median_latency": statistics.median(finished_at.values()),
            "compute_per_generation": compute / generations,
            "compute_ceiling_per_minute": 60 * cfg.model_workers * generations / compute if compute else float("nan"),
            "model_server_cpu": cpu,
            "cpu_ceiling_per_minute": 60 * (os.cpu_count() or 1) * generations / cpu if cpu else float("nan"),
            "max_running": stats.get("max_running"),
        }
    finally:
        stack.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--size", type=int, default=384, help="photo side in pixels")
    args = parser.parse_args()
    image = photo(args.size)
    var = ROOT / "var" / "bench-production"
    shutil.rmtree(var, ignore_errors=True)

    results = []
    embedded = StackConfig(var_dir=var / "embedded", extra_env=dict(LOAD_TEST_LIMITS), **PORTS)
    production = local_production_config(var / "production", f"bb_bench_{os.getpid()}", POSTGRES, REDIS, s3_port=18700, **PORTS)
    production.extra_env.update(LOAD_TEST_LIMITS)
    for cfg in (embedded, production):
        print(f"{cfg.profile}: starting the stack and sending {args.generations} generations...", flush=True)
        try:
            results.append(run_profile(cfg, args.generations, image))
        finally:
            if cfg.production:
                discard_production_data(cfg)

    print(f"\n== {args.generations} concurrent generations, {args.size}-px photo, {os.cpu_count()} cores ==")
    print(f"{'profile':11s} {'gen/min':>7s} {'CPU ceil':>8s} {'ratio':>6s} {'job ceil':>8s} {'ratio':>6s} "
          f"{'wall s':>6s} {'median s':>8s} {'ms CPU/gen s':>12s} {'job/gen s':>9s} {'failed':>6s}")  # fmt: skip
    for r in results:
        print(f"{r['profile']:11s} {r['per_minute']:7.2f} {r['cpu_ceiling_per_minute']:8.2f} "
              f"{r['per_minute'] / r['cpu_ceiling_per_minute']:6.2f} {r['compute_ceiling_per_minute']:8.2f} "
              f"{r['per_minute'] / r['compute_ceiling_per_minute']:6.2f} {r['wall']:6.1f} {r['median_latency']:8.1f} "
              f"{r['model_server_cpu'] / args.generations:12.2f} {r['compute_per_generation']:9.2f} {len(r['failed']):6d}")  # fmt: skip
    base, prod = results
    print(f"production / embedded throughput: {prod['per_minute'] / base['per_minute']:.2f}")
    print("CPU ceiling = 60 * cores / model-server CPU s per generation; job ceiling = 60 * model-server workers / job s per generation")
    print(f"machine load average at the end: {os.getloadavg()[0]:.1f} (other work on the machine skews every figure)")
    return 1 if any(r["failed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
