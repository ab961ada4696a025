"""The inside of one model-server worker process: receive a job, run its stage, report back.

The server starts each worker with a private pipe (never a shared queue: a worker killed to
cancel its job must not leave a shared lock held). Messages from the worker are tuples:
``("log", level, message, timestamp)`` during the job, then exactly one of
``("done", result, compute_seconds)`` or ``("failed", error_type, message, http_status,
compute_seconds)``. Models stay loaded for the life of the process. A fresh worker warms them
up (imports, the pose graph, the nudity detector) in a background thread as soon as it starts,
so the first job does not pay for loading; a job that needs a model still being loaded waits
on that model's lock, and jobs that need none (selftest) start at once.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from model_server.fault_injection import INJECTED_FAILURE
from model_server.job_context import INTERNAL_ERROR, JobContext, JobFailure

def worker_main(conn: Connection, files_root: str, max_input_bytes: int, warm_up: bool = True) -> None:
    """Entry point of a worker process: serve jobs from ``conn`` until it closes."""
    _exit_with_parent()
    if warm_up:
        threading.Thread(target=warm_up_models, name="model-warm-up", daemon=True).start()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        _run_job(conn, job, Path(files_root), max_input_bytes)


def warm_up_models() -> None:
    """Import the stages' libraries and load their models once, off the job path.

    Each step is best effort: a model that cannot load here fails the job that needs it, with
    that job's own error, instead of killing the worker.
    """
    import logging

    log = logging.getLogger(__name__)
    started = time.perf_counter()
    steps = (("stage modules", _import_stage_modules), ("pose model", _warm_pose), ("nudity detector", _warm_moderation))
    for name, step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001 - warming is an optimisation, never a failure
            log.warning("Warm-up of the %s failed; its first job will load it", name, exc_info=True)
    log.info("Worker models warmed up in %.1f s", time.perf_counter() - started)


def _import_stage_modules() -> None:
    import include.media.frames  # noqa: F401
    import model_server.model_stages  # noqa: F401
    import model_server.vision.analysis  # noqa: F401
    import model_server.vision.animation  # noqa: F401
    import model_server.vision.cartoon  # noqa: F401
    import model_server.vision.imageio  # noqa: F401
    import model_server.vision.matting  # noqa: F401
    import model_server.vision.segmentation  # noqa: F401


def _warm_pose() -> None:
    import numpy as np

    from model_server.vision._pose import detect_pose

    # One inference builds the graph and its TFLite delegate; a blank frame finds nobody, cheaply.
    detect_pose(np.full((96, 96, 3), 127, np.uint8))


def _warm_moderation() -> None:
    import numpy as np

    from model_server.vision.moderation import moderate

    moderate(np.full((64, 64, 3), 127, np.uint8))


def _run_job(conn: Connection, job: dict[str, Any], files_root: Path, max_input_bytes: int) -> None:
    # Imported here so the worker starts fast; the stages import their heavy libraries lazily too.
    from model_server.model_stages import MODELS, business_error_of

    ctx = JobContext(conn, job["request_id"], job["base_url"], files_root, max_input_bytes)
    faults = job.get("faults") or {}
    try:
        if faults.get("latency_s"):
            ctx.log(f"Injected latency: {faults['latency_s']} s", "DEBUG")
            time.sleep(float(faults["latency_s"]))
        if faults.get("hang"):
            ctx.log("Injected hang: this job runs until cancelled", "DEBUG")
            _hang(conn)
        started = time.perf_counter()
        try:
            if faults.get("fail"):
                raise JobFailure(INJECTED_FAILURE, "Injected failure", 500)
            spec = MODELS[job["model_id"]]
            payload = spec.input_model.model_validate(job["input"])
            result = spec.handler(ctx, payload)
        except JobFailure as exc:
            conn.send(("failed", exc.error_type, exc.message, exc.http_status, time.perf_counter() - started))
            return
        except Exception as exc:  # noqa: BLE001 - every failure must reach the client as a job error
            business = business_error_of(exc)
            if business is not None:
                code, message = business
                ctx.log(message, "ERROR")
                conn.send(("failed", code, message, 422, time.perf_counter() - started))
            else:
                ctx.log(traceback.format_exc(limit=8), "ERROR")
                conn.send(("failed", INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", 500,
                           time.perf_counter() - started))
            return
        conn.send(("done", result, time.perf_counter() - started))
    except (BrokenPipeError, EOFError, OSError):
        # The server went away or killed the pipe: nothing to report to.
        os._exit(0)


def _hang(conn: Connection) -> None:
    # Poll the pipe instead of sleeping so that a vanished server ends the process too.
    while True:
        if conn.poll(1.0):
            try:
                conn.recv()
            except (EOFError, OSError):
                os._exit(0)


def _exit_with_parent() -> None:
    """A worker outliving its server (killed with SIGKILL) would hold CPU and files; exit instead."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
