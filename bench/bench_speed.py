"""`make bench`: where a generation's time, the CPU and the memory go, beside the old behaviour.

Run: ``make bench`` (``.venv/bin/python -m bench [--runs 3] [--concurrency 5,10,20] [--baseline REV]``);
``--report var/bench/speed.json`` prints and plots an earlier run again.

For each variant it starts the whole embedded stack (as `make up` does, on private ports under
``var/bench/<variant>``) and measures, one variant after the other in the same run:
- **memory**: PSS of every process of the stack after it has been idle for a while (bench/memory.py),
  again after the photos, and (``--long-idle``) once the model server's keep-alive is over;
- **latency**: ``--runs`` 1024-px photos one after the other through ``POST /api/generations``:
  submit -> the buddy visible (``succeeded``: WebM and poster) and -> every format ready; per
  stage the model server's compute, the encode on the critical path (the ``transcode`` task) and
  orchestration (the rest: Airflow's scheduling, task processes, waits), the gap between tasks;
- **throughput** (``--concurrency``): N generations at once, generations a minute against the CPU
  ceiling (the machine's cores divided by the model compute + media encode seconds a generation
  needs: every encode task's time, the fallback formats' too),
  and the CPU seconds per generation by process: Airflow (scheduler, its workers and task
  processes with their ffmpeg encodes, triggerer, dag-processor, api-server), the model server, the API.

``current`` is this checkout. ``baseline`` is the same stack and bench at git revision ``--baseline``
(default: the last commit before the speed work), exported under ``var/bench/baseline-src`` and
started from there with this checkout's virtualenv: today's figures measured again, side by side.
``--no-baseline`` measures this checkout alone.

Writes ``var/bench/speed.json`` and the plots ``var/bench/latency.png``, ``memory.png`` and (with
``--concurrency``) ``throughput.png``; ``--docs`` copies the plots to ``docs/bench/`` for the README.
The machine is shared: compare the variants of one run, and read medians and ratios, not single runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_pipeline import parse_time, photo_1024  # noqa: E402
from bench.memory import stack_memory, total_mb  # noqa: E402
from include.generations import GENERATE_DAG_ID  # noqa: E402
from include.settings import Settings  # noqa: E402

# main before the speed work: 32 LocalExecutor workers, the serial pipeline, every format before publishing.
DEFAULT_BASELINE = "5084c18"
# The model server's default keep-alive (the bench's stacks run on the defaults).
KEEP_ALIVE_S = Settings.model_fields["model_server_keep_alive_s"].default
OUT = ROOT / "var" / "bench"
# Process groups' CPU is summed per service; these rows make the CPU split.
AIRFLOW_SERVICES = ("scheduler", "triggerer", "dag-processor", "api-server", "forkserver")

# Started inside the variant's source tree (its ops.stack), so each variant runs its own code.
LAUNCHER = """
import json, subprocess, sys
from pathlib import Path
from ops.stack import LOAD_TEST_LIMITS, Stack, StackConfig, initialise, environment
cfg = StackConfig(var_dir=Path(sys.argv[1]), airflow_port=int(sys.argv[2]), api_port=int(sys.argv[3]),
                  model_server_port=int(sys.argv[4]), extra_env=dict(LOAD_TEST_LIMITS))
initialise(cfg)
stack = Stack(cfg)
stack.start()
try:
    stack.wait_ready(timeout=600)
    token = stack.airflow_token()
    key = subprocess.run([sys.executable, "-m", "api.cli", "user", "create", "bench@example.com", "--tokens", "1000"],
                         env=environment(cfg), capture_output=True, text=True, check=True).stdout.strip().split()[-1]
    print(json.dumps({"pids": {n: p.pid for n, p in stack.procs.items()}, "token": token, "key": key,
                      "env": {k: v for k, v in environment(cfg).items() if k.startswith(("AIRFLOW__CORE__PARALLELISM", "AIRFLOW__SCHEDULER__", "AIRFLOW__DAG_PROCESSOR__", "BITBUDDIES_MODEL_SERVER_W"))}}), flush=True)
    sys.stdin.read()
finally:
    stack.stop()
"""


class Variant:
    """One stack, started from a source tree, measured from outside over HTTP and /proc."""

    def __init__(self, name: str, src: Path, port_base: int, env: dict[str, str] | None = None):
        self.name, self.src = name, src
        self.env = env or {}  # set for this variant's stack (e.g. a switch turned off)
        self.var = OUT / name
        self.airflow_port, self.api_port, self.model_port = port_base, port_base + 1, port_base + 2
        self.proc: subprocess.Popen | None = None
        self.pids: dict[str, int] = {}
        self.token = ""
        self.settings: dict[str, str] = {}
        self.key = ""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def model_url(self) -> str:
        return f"http://127.0.0.1:{self.model_port}"

    def start(self) -> None:
        shutil.rmtree(self.var, ignore_errors=True)
        self.var.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "BITBUDDIES_"))}
        env["PYTHONPATH"] = str(self.src)
        env.update(self.env)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(self.var), str(self.airflow_port), str(self.api_port), str(self.model_port)],
            cwd=self.src, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.var / "launcher.log", "wb"),
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the stack did not start; see {self.var / 'launcher.log'}")
        started = json.loads(line)
        self.pids, self.token, self.settings, self.key = started["pids"], started["token"], started["env"], started["key"]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=120)

    def user_key(self, tokens: int) -> str:
        return self.key  # the launcher's bench user has tokens enough for every measurement

    def task_instances(self, run_id: str) -> list[dict]:
        url = f"{self.airflow_url}/api/v2/dags/{GENERATE_DAG_ID}/dagRuns/{run_id}/taskInstances"
        return httpx.get(url, headers={"Authorization": f"Bearer {self.token}"}, params={"limit": 100}, timeout=30).json()["task_instances"]


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system, with reaped children's) of every process group, by service."""
    tick = os.sysconf("SC_CLK_TCK")
    groups = {}
    for name, pid in pids.items():
        try:
            groups[os.getpgid(pid)] = name
        except OSError:
            pass
    totals = dict.fromkeys(pids, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        name = groups.get(int(fields[2]))  # pgrp
        if name:
            totals[name] += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return totals


def wait_until_done(api: httpx.Client, gid: str, t0: float, timeout: float = 900) -> dict:
    """Poll the generation: the time it became visible and the time every format was ready."""
    visible = None
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = api.get(f"/api/generations/{gid}").json()
        now = time.time() - t0
        if state["status"] == "failed":
            raise RuntimeError(f"generation {gid} failed: {state['error']}")
        if state["status"] == "succeeded":
            visible = visible or now
            if not state.get("formats_pending"):
                return {"visible_s": visible, "all_formats_s": now}
        time.sleep(0.1)
    raise TimeoutError(f"generation {gid} not done after {timeout} s")


def wait_until_all_done(api: httpx.Client, gids: list[str], t0: float, stall_s: float = 300) -> list[dict]:
    """:func:`wait_until_done` for many generations at once; gives up when none of them moved on
    (status, stage or formats) for ``stall_s`` seconds (a stack whose scheduler died never finishes)."""
    visible: dict[str, float] = {}
    done: dict[str, dict] = {}
    seen: dict[str, tuple] = {}
    last_progress = time.time()
    while len(done) < len(gids):
        for gid in (g for g in gids if g not in done):
            state = api.get(f"/api/generations/{gid}").json()
            now = time.time() - t0
            if state["status"] == "failed":
                raise RuntimeError(f"generation {gid} failed: {state['error']}")
            mark = (state["status"], state.get("stage"), tuple(state.get("formats_pending") or ()))
            if seen.get(gid) != mark:
                seen[gid], last_progress = mark, time.time()
            if state["status"] == "succeeded":
                visible.setdefault(gid, now)
                if not state.get("formats_pending"):
                    done[gid] = {"visible_s": visible[gid], "all_formats_s": now}
        if time.time() - last_progress > stall_s:
            raise TimeoutError(f"no generation moved on for {stall_s:.0f} s ({len(gids) - len(done)} not done)")
        time.sleep(0.5)
    return [done[gid] for gid in gids]


def critical_path(tis: dict[str, dict], t0: float) -> dict[str, float]:
    """Seconds from submit to each task's start and end (the run's timeline)."""
    out = {}
    for task_id, ti in tis.items():
        if ti.get("start_date") and ti.get("end_date") and ti["state"] == "success":
            out[task_id] = (parse_time(ti["start_date"]) - t0, parse_time(ti["end_date"]) - t0)
    return out


def measure_latency(v: Variant, runs: int) -> dict:
    key = v.user_key(runs + 1)
    api = httpx.Client(base_url=v.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    photo = photo_1024()
    httpx.post(f"{v.model_url}/_admin/reset").raise_for_status()
    per_run = []
    cpu_before = cpu_seconds(v.pids)
    for i in range(runs):
        t0 = time.time()
        gen = api.post("/api/generations", files={"image": ("p.jpg", photo, "image/jpeg")}, data={"prompt": "wave hello"}).json()
        times = wait_until_done(api, gen["id"], t0)
        time.sleep(2.0)  # the run's last tasks and the teardown finish
        tis = {ti["task_id"]: ti for ti in v.task_instances(gen["id"])}
        timeline = critical_path(tis, t0)
        per_run.append({**times, "timeline": timeline,
                        "transcode_s": tis.get("transcode", {}).get("duration") or 0.0,
                        "encode_s": sum(tis.get(t, {}).get("duration") or 0.0 for t in ENCODE_TASKS),
                        "task_processes": sum(1 for ti in tis.values() if ti["state"] == "success")})
        print(f"  {v.name} run {i}: visible {times['visible_s']:.1f} s, all formats {times['all_formats_s']:.1f} s", flush=True)
    cpu_after = cpu_seconds(v.pids)
    stats = httpx.get(f"{v.model_url}/_admin/stats").json()
    compute: dict[str, list[float]] = {}
    for job in stats["jobs"]:
        compute.setdefault(job["model_id"].split("/")[-1], []).append(job["compute_seconds"] or 0.0)
    compute_median = {m: statistics.median(s) for m, s in compute.items()}
    # moderate and analyze overlap in the current pipeline: only the longer one is on the critical path.
    visible = statistics.median(r["visible_s"] for r in per_run)
    transcode = statistics.median(r["transcode_s"] for r in per_run)
    parallel_head = v.name != "baseline"
    head = ["moderate", "analyze"]
    on_path = {m: s for m, s in compute_median.items() if not (parallel_head and m in head)}
    if parallel_head:
        on_path["moderate|analyze"] = max(compute_median.get(m, 0.0) for m in head)
    compute_on_path = sum(on_path.values())
    gaps = []
    for r in per_run:
        spans = sorted(r["timeline"].values())
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:]) if b[0] - a[1] > 0]
    return {
        "runs": per_run,
        "visible_s": visible,
        "all_formats_s": statistics.median(r["all_formats_s"] for r in per_run),
        "compute_per_stage_s": compute_median,
        "compute_on_critical_path_s": compute_on_path,
        "compute_on_path_per_stage_s": on_path,
        "transcode_on_critical_path_s": transcode,
        "media_encode_s_per_generation": statistics.median(r["encode_s"] for r in per_run),
        "orchestration_s": visible - compute_on_path - transcode,
        "task_gap_median_s": statistics.median(gaps) if gaps else None,
        "task_processes_per_run": statistics.median(r["task_processes"] for r in per_run),
        "cpu_s_per_generation": {k: (cpu_after[k] - cpu_before[k]) / runs for k in cpu_after},
    }


def measure_throughput(v: Variant, n: int) -> dict:
    key = v.user_key(n + 1)
    api = httpx.Client(base_url=v.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    photo = photo_1024()
    httpx.post(f"{v.model_url}/_admin/reset").raise_for_status()
    cpu_before = cpu_seconds(v.pids)
    peak = {"pss_mb": 0.0}

    def sample_memory(stop: threading.Event) -> None:
        while not stop.wait(5):
            peak["pss_mb"] = max(peak["pss_mb"], total_mb(stack_memory(v.pids)))

    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(stop,), daemon=True)
    sampler.start()
    t0 = time.time()
    gids = [api.post("/api/generations", files={"image": ("p.jpg", photo, "image/jpeg")}, data={"prompt": "wave hello"}).json()["id"]
            for _ in range(n)]
    results = wait_until_all_done(api, gids, t0)
    wall = max(r["visible_s"] for r in results)
    stop.set()
    sampler.join()
    cpu_after = cpu_seconds(v.pids)
    stats = httpx.get(f"{v.model_url}/_admin/stats").json()
    compute = sum(job["compute_seconds"] or 0.0 for job in stats["jobs"]) / n
    cpu = {k: (cpu_after[k] - cpu_before[k]) / n for k in cpu_after}
    return {"n": n, "wall_s": wall, "per_minute": 60 * n / wall, "model_compute_s_per_generation": compute,
            "cpu_s_per_generation": cpu, "peak_pss_mb": peak["pss_mb"],
            "visible_median_s": statistics.median(r["visible_s"] for r in results)}


def measure(v: Variant, runs: int, concurrency: list[int], idle_s: float, keep_alive_wait_s: float = 0.0) -> dict:
    print(f"== {v.name}: starting the stack from {v.src}", flush=True)
    # The machine's load while this variant is measured (others share it): the figures' context.
    loads: list[float] = []
    stop_load = threading.Event()

    def sample_load() -> None:
        while not stop_load.wait(5):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample_load, daemon=True).start()
    try:
        return _measure(v, runs, concurrency, idle_s, keep_alive_wait_s, loads)
    finally:
        stop_load.set()


def _measure(v: Variant, runs: int, concurrency: list[int], idle_s: float, keep_alive_wait_s: float,
             loads: list[float]) -> dict:
    v.start()
    try:
        time.sleep(idle_s)  # settle: warm-ups done, the scheduler idle
        memory = stack_memory(v.pids)
        print(f"  {v.name} idle PSS {total_mb(memory):.0f} MB", flush=True)
        result = {"settings": v.settings, "idle_memory": memory, "idle_pss_mb": total_mb(memory),
                  "latency": measure_latency(v, runs)}
        # Idle again after generations, as long as before them (idle executor workers retire after
        # 30 s; every model-server worker that took a job keeps its models).
        time.sleep(idle_s)
        result["idle_after_runs_memory"] = stack_memory(v.pids)
        result["idle_after_runs_pss_mb"] = total_mb(result["idle_after_runs_memory"])
        print(f"  {v.name} idle PSS after the runs {result['idle_after_runs_pss_mb']:.0f} MB", flush=True)
        result["throughput"] = []
        for n in concurrency:
            try:
                result["throughput"].append(measure_throughput(v, n))
            except Exception as exc:  # noqa: BLE001 - keep what was measured; say what failed
                print(f"  {v.name} {n} at once: FAILED: {exc}", flush=True)
                result.setdefault("errors", []).append(f"throughput at {n}: {exc}")
                continue
            t = result["throughput"][-1]
            print(f"  {v.name} {n} at once: {t['per_minute']:.2f} generations/min", flush=True)
        if keep_alive_wait_s > 0:
            # Long unused: the model server's workers have given their models back (keep-alive).
            time.sleep(keep_alive_wait_s)
            result["idle_long_memory"] = stack_memory(v.pids)
            result["idle_long_pss_mb"] = total_mb(result["idle_long_memory"])
            print(f"  {v.name} idle PSS {keep_alive_wait_s:.0f} s after the last generation {result['idle_long_pss_mb']:.0f} MB",
                  flush=True)
        result["load_average_median"] = statistics.median(loads) if loads else None
        result["load_average_max"] = max(loads) if loads else None
        return result
    finally:
        v.stop()


def export_revision(rev: str) -> Path:
    dest = OUT / "baseline-src"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
    return out.stdout.strip() + ("+changes" if dirty.strip() else "")


# The tasks that encode media: the ceiling counts all of their time, on the critical path or not.
ENCODE_TASKS = ("transcode", "encode_fallbacks")


def media_encode_s(latency: dict) -> float:
    """Median seconds of media encoding per generation (every format: the transcode task's and the
    fallback encodes'); from the runs' task timelines for results written before it was recorded."""
    if latency.get("media_encode_s_per_generation") is not None:
        return latency["media_encode_s_per_generation"]
    spans = [sum(r["timeline"][t][1] - r["timeline"][t][0] for t in ENCODE_TASKS if t in r["timeline"]) for r in latency["runs"]]
    return statistics.median(spans)


def ceiling_per_minute(model_compute_s: float, encode_s: float) -> float:
    cores = len(os.sched_getaffinity(0))
    return 60 * cores / (model_compute_s + encode_s)


def report(results: dict) -> None:
    variants = results["variants"]
    names = list(variants)
    print(f"\n== BitBuddies speed benchmark at {results['commit']} ({results['runs']} runs, 1024-px photo, "
          f"{results['cores']} cores, load average at start {results['load_average'][0]:.1f}) ==")
    for n, setting in results.get("also", {}).items():
        print(f"{n}: this checkout with {setting}")
    for n in names:
        if variants[n].get("load_average_median") is not None:
            print(f"load average while {n} was measured: median {variants[n]['load_average_median']:.1f}, "
                  f"max {variants[n]['load_average_max']:.1f}")
    rows = [
        ("buddy visible (WebM + poster), median", "visible_s", "s"),
        ("every format ready, median", "all_formats_s", "s"),
        ("model compute on the critical path", "compute_on_critical_path_s", "s"),
        ("encode on the critical path (transcode)", "transcode_on_critical_path_s", "s"),
        ("orchestration (visible - compute - encode)", "orchestration_s", "s"),
        ("task-to-task gap, median", "task_gap_median_s", "s"),
        ("task instances per generation", "task_processes_per_run", ""),
    ]
    print(f"{'':46s}" + "".join(f"{n:>12s}" for n in names) + ("       ratio" if len(names) == 2 else ""))
    for label, key, unit in rows:
        vals = [variants[n]["latency"][key] for n in names]
        line = f"{label:46s}" + "".join(f"{x:>10.2f} {unit:1s}" for x in vals)
        if len(vals) == 2 and vals[1]:
            line += f"{vals[0] / vals[1]:>12.2f}"
        print(line)
    vals = [media_encode_s(variants[n]["latency"]) for n in names]
    print(f"{'media encode per generation (every format)':46s}" + "".join(f"{x:>10.2f} s" for x in vals)
          + (f"{vals[0] / vals[1]:>12.2f}" if len(vals) == 2 and vals[1] else ""))
    for label, key in (("stack idle PSS (fresh)", "idle_pss_mb"), ("stack idle PSS (after the runs)", "idle_after_runs_pss_mb"),
                       ("stack idle PSS (long unused: keep-alive over)", "idle_long_pss_mb")):
        if not all(key in variants[n] for n in names):
            continue
        vals = [variants[n][key] for n in names]
        print(f"{label:46s}" + "".join(f"{x:>9.0f} MB" for x in vals) + (f"{vals[0] / vals[1]:>12.2f}" if len(vals) == 2 else ""))
    print("idle PSS by process (MB):")
    for row in sorted({r for n in names for r in variants[n]["idle_memory"]}):
        cells = [variants[n]["idle_memory"].get(row, {"pss_mb": 0, "processes": 0}) for n in names]
        print(f"  {row:44s}" + "".join(f"{c['pss_mb']:>7.0f} ({c['processes']:2d})" for c in cells))
    print("CPU seconds per generation, one at a time (scheduler: with its executor workers, task processes and their ffmpeg encodes):")
    for service in variants[names[0]]["latency"]["cpu_s_per_generation"]:
        print(f"  {service:44s}" + "".join(f"{variants[n]['latency']['cpu_s_per_generation'].get(service, 0):>10.2f} s" for n in names))
    for n in names:
        for t in variants[n].get("throughput", []):
            lat = variants[n]["latency"]
            ceiling = ceiling_per_minute(t["model_compute_s_per_generation"], media_encode_s(lat))
            airflow = sum(t["cpu_s_per_generation"].get(s, 0) for s in AIRFLOW_SERVICES)
            print(f"{n} at {t['n']} concurrent: {t['per_minute']:.2f} generations/min, ceiling {ceiling:.2f} "
                  f"(ratio {t['per_minute'] / ceiling:.2f}); CPU s per generation: Airflow {airflow:.1f}, "
                  f"model server {t['cpu_s_per_generation'].get('model-server', 0):.1f}, API {t['cpu_s_per_generation'].get('api', 0):.1f}; "
                  f"peak PSS {t['peak_pss_mb']:.0f} MB")


def plot(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = results["variants"]
    names = list(variants)
    load = ", ".join(f"{n} {variants[n]['load_average_median']:.0f}" for n in names if variants[n].get("load_average_median") is not None)
    title = f"at {results['commit']}, {results['cores']} cores shared" + (f" (median load average: {load})" if load else "")
    files = []

    # Latency: the critical path of one generation, stacked.
    fig, ax = plt.subplots(figsize=(8, 4.5))
    stages = ["moderate", "analyze", "moderate|analyze", "cartoonize", "expand-full-body", "segment-image", "animate", "segment-video"]
    colors = plt.get_cmap("tab20").colors
    for i, n in enumerate(names):
        lat = variants[n]["latency"]
        bottom = 0.0
        parts = [(s, lat["compute_on_path_per_stage_s"].get(s, 0.0)) for s in stages]
        parts += [("encode (transcode)", lat["transcode_on_critical_path_s"]), ("orchestration", max(0.0, lat["orchestration_s"]))]
        for j, (label, secs) in enumerate(parts):
            if secs <= 0:
                continue
            color = "#bbbbbb" if label == "orchestration" else ("#f4a259" if label.startswith("encode") else colors[j * 2 % 20])
            ax.bar(i, secs, bottom=bottom, color=color, label=label, edgecolor="white", width=0.55)
            bottom += secs
        ax.plot([i - 0.3, i + 0.3], [lat["all_formats_s"]] * 2, color="black", linestyle="--", linewidth=1)
        ax.text(i, bottom + 0.3, f"visible {lat['visible_s']:.1f} s\nall formats {lat['all_formats_s']:.1f} s", ha="center", va="bottom", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("seconds from submit to the buddy visible (median)")
    ax.set_title(f"One 1024-px photo: where the time goes\n{title}", fontsize=10)
    ax.set_ylim(0, max(variants[n]["latency"]["all_formats_s"] for n in names) * 1.25)
    fig.tight_layout()
    files.append(out / "latency.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    # Memory per process, idle.
    rows = sorted({r for n in names for r in variants[n]["idle_memory"]})
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.6))
    height = 0.8 / len(names)
    for i, n in enumerate(names):
        mem = variants[n]["idle_memory"]
        ax.barh([k + i * height for k in range(len(rows))], [mem.get(r, {}).get("pss_mb", 0) for r in rows], height=height,
                label=f"{n}: {variants[n]['idle_pss_mb']:.0f} MB in all"
                + (f" ({variants[n]['idle_long_pss_mb']:.0f} MB long unused)" if "idle_long_pss_mb" in variants[n] else ""))
    ax.set_yticks([k + height * (len(names) - 1) / 2 for k in range(len(rows))], rows, fontsize=8)
    ax.set_xlabel("PSS, MB (idle stack, 45 s after start)")
    ax.legend(fontsize=8)
    ax.set_title(f"Memory per process\n{title}", fontsize=10)
    fig.tight_layout()
    files.append(out / "memory.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    if any(variants[n].get("throughput") for n in names):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        for n in names:
            ts = variants[n].get("throughput", [])
            ax1.plot([t["n"] for t in ts], [t["per_minute"] for t in ts], marker="o", label=n)
        ax1.set_xlabel("generations submitted at once")
        ax1.set_ylabel("generations per minute")
        ax1.legend()
        groups = ["airflow", "model-server", "api"]
        x = 0
        ticks, tick_labels = [], []
        for n in names:
            for t in variants[n].get("throughput", []):
                cpu = t["cpu_s_per_generation"]
                split = [sum(cpu.get(s, 0) for s in AIRFLOW_SERVICES), cpu.get("model-server", 0), cpu.get("api", 0)]
                bottom = 0.0
                for g, secs, color in zip(groups, split, ("#bbbbbb", "#4c72b0", "#55a868")):
                    ax2.bar(x, secs, bottom=bottom, color=color, label=g if x == 0 else None)
                    bottom += secs
                ticks.append(x)
                tick_labels.append(f"{n}\n{t['n']}")
                x += 1
            x += 0.5
        ax2.set_xticks(ticks, tick_labels, fontsize=7)
        ax2.set_ylabel("CPU s per generation")
        ax2.legend(fontsize=8)
        fig.suptitle(f"Throughput and CPU split\n{title}", fontsize=10)
        fig.tight_layout()
        files.append(out / "throughput.png")
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="", help="comma-separated, e.g. 1,5,10,20 (empty: latency and memory only)")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision measured beside this checkout")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--also", metavar="VAR=VALUE", action="append", default=[],
        help="measure this checkout a second time with VAR=VALUE set (e.g. BITBUDDIES_FORK_SERVICES=0), beside the others",
    )  # fmt: skip
    parser.add_argument("--idle", type=float, default=45.0, help="seconds the stack idles before its memory is read")
    parser.add_argument(
        "--long-idle", type=float, default=KEEP_ALIVE_S + 15,
        help="seconds after the last generation to read the memory again, the models' keep-alive over (0: skip)",
    )  # fmt: skip
    parser.add_argument("--docs", action="store_true", help="copy the plots to docs/bench/ for the README")
    parser.add_argument("--report", metavar="JSON", help="print and plot the results of an earlier run (its speed.json) instead of measuring")
    args = parser.parse_args()
    if args.report:
        results = json.loads(Path(args.report).read_text())
        OUT.mkdir(parents=True, exist_ok=True)
        report(results)
        print("\nwrote", *plot(results, OUT))
        return 0
    concurrency = [int(x) for x in args.concurrency.split(",") if x.strip()]

    OUT.mkdir(parents=True, exist_ok=True)
    variants = [Variant("current", ROOT, 18180)]
    for i, setting in enumerate(args.also):
        var, _, value = setting.partition("=")
        variants.append(Variant(f"also{i + 1}", ROOT, 18380 + 100 * i, {var: value}))
    if not args.no_baseline:
        variants.insert(0, Variant("baseline", export_revision(args.baseline), 18280))
    results = {
        "commit": commit(),
        "baseline": None if args.no_baseline else args.baseline,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cores": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "runs": args.runs,
        "also": {f"also{i + 1}": setting for i, setting in enumerate(args.also)},
        "variants": {},
    }
    # The current checkout first in the report, the baseline beside it (ratio = current / baseline).
    for v in variants:
        results["variants"][v.name] = measure(v, args.runs, concurrency, args.idle, args.long_idle)
        (OUT / "speed.json").write_text(json.dumps(results, indent=2))  # kept if a later variant fails
    order = ["current", *(v.name for v in variants if v.name.startswith("also")), "baseline"]
    results["variants"] = {n: results["variants"][n] for n in order if n in results["variants"]}
    (OUT / "speed.json").write_text(json.dumps(results, indent=2))
    report(results)
    files = plot(results, OUT)
    if args.docs:
        docs = ROOT / "docs" / "bench"
        docs.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, docs / f.name)
        (docs / "speed.json").write_text(json.dumps(results, indent=2))
    print("\nwrote", OUT / "speed.json", *files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
