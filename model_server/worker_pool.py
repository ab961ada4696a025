"""The job manager: a FIFO queue in front of a bounded pool of worker processes.

Each worker slot is a thread of the server that owns one worker process (started with the
``spawn`` method: the server has threads, and forking a threaded process is unsafe). The slot
takes the oldest queued job, hands it to its process over a private pipe and relays the
process's log lines and outcome into the :class:`JobStore`. Cancelling a running job kills
that process and starts a fresh one, so a hung or runaway stage never blocks a slot for good.

Only the first ``warm_workers`` processes load the models when they start (~270 MB each once
loaded: the pose graph, the nudity detector); the others start bare (~27 MB) and load what a job
needs when they first get one. A queued job goes to a worker that has run its model (or loaded
every model) when one is idle; when those are all busy, another worker takes it only once it has
waited ``COLD_START_DELAY_S`` (loading a model takes 0.5-2 s, longer than the quick stages it
would wait for). So an idle server holds one set of models, a lone generation (whose moderate and
analyze jobs come together) never waits for a model to load, and under load every worker takes
jobs and loads what its jobs need.

A worker that has held models without a job for ``keep_alive_s`` (the server's
``MODEL_SERVER_KEEP_ALIVE_S``, 300 s by default; 0 keeps them for good) is replaced by a bare one,
as a local model runner unloads an unused model: a server nobody uses gives their memory back, and
the next job after such a pause loads what it needs (1-2 s, once).

Jobs belong to the server, not to the HTTP client that submitted them: a client that goes
away changes nothing. The manager also keeps the in-flight record (most jobs running and
most outstanding at once) that tests and benchmarks read through ``/_admin/stats``.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait as wait_for_ready
from pathlib import Path
from typing import Any

from model_server.fault_injection import Faults, JobFaults
from model_server.job_store import COMPLETED, IN_PROGRESS, IN_QUEUE, Job, JobStore
from model_server.job_context import INTERNAL_ERROR
from model_server.worker_process import worker_main

# error_type of a cancelled job (a client decision: answered 422 like other non-retryable outcomes).
CANCELLED = "cancelled"
# error_type of a job whose worker process died under it (out of memory, segfault in a library).
WORKER_CRASHED = "worker_crashed"

# How often a slot waiting on its worker looks at the cancel requests.
_CANCEL_CHECK_S = 0.05
# How long a queued job waits for a busy worker that has its model before another loads it.
COLD_START_DELAY_S = 1.0


class _Slot:
    """One worker process and the pipe to it."""

    def __init__(self, index: int, files_root: Path, max_input_bytes: int, warm_up: bool = True) -> None:
        self.index = index
        # Loads its models when it starts; a bare worker loads what each job needs.
        self.warm_up = warm_up
        # The models its process has run (None: it loaded every model when it started).
        self.models: set[str] | None = None if warm_up else set()
        self._files_root = files_root
        self._max_input_bytes = max_input_bytes
        self._mp = multiprocessing.get_context("spawn")
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn = None
        # When its process last started or finished a job (monotonic): the keep-alive counts from it.
        self.last_used = time.monotonic()

    def ensure_started(self) -> None:
        if self.process is not None and self.process.is_alive():
            return
        self.stop()
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        self.process = self._mp.Process(
            target=worker_main,
            args=(child_conn, str(self._files_root), self._max_input_bytes, self.warm_up),
            name=f"model-worker-{self.index}",
            daemon=True,
        )
        self.process.start()
        child_conn.close()
        self.conn = parent_conn
        self.models = None if self.warm_up else set()
        self.last_used = time.monotonic()

    @property
    def warm(self) -> bool:
        """Whether its process has loaded any model."""
        return self.models is None or bool(self.models)

    def has(self, model_id: str | None) -> bool:
        return self.models is None or model_id in self.models

    def keep_alive_left(self, keep_alive_s: float) -> float | None:
        """Seconds until this idle worker's models are due to go; None when it holds none to release."""
        if keep_alive_s <= 0 or not self.warm:
            return None
        return self.last_used + keep_alive_s - time.monotonic()

    def release_models(self) -> None:
        """Replace the process by a bare one (its models' memory goes with it)."""
        self.warm_up = False
        self.stop()
        self.ensure_started()

    def stop(self) -> None:
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.process = None
        self.conn = None


class JobManager:
    def __init__(self, store: JobStore, faults: Faults, *, workers: int, files_root: Path,
                 max_input_bytes: int, warm_workers: int = 1, keep_alive_s: float = 0.0,
                 on_change: Callable[[str], None] | None = None) -> None:
        if workers < 1:
            raise ValueError("the model server needs at least one worker")
        self._store = store
        self._faults = faults
        self._files_root = files_root
        # One condition guards the queue, the running set, cancel requests and the in-flight record,
        # and every job status transition, so that cancel and completion never interleave.
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        # Each queued job's model and when it was queued (monotonic): who takes it, and when.
        self._queued: dict[str, tuple[str, float]] = {}
        self._running: dict[str, _Slot] = {}
        self._cancel_requested: set[str] = set()
        self._slots = [_Slot(i, files_root, max_input_bytes, warm_up=i < warm_workers) for i in range(workers)]
        self._keep_alive_s = keep_alive_s
        # Slots waiting for a job: one that has a queued job's model takes it first.
        self._idle: set[int] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._stats_since = time.time()
        self._max_running = 0
        self._max_outstanding = 0
        # Told the request id whenever a job starts or finishes (the status streams wake on it);
        # called with the condition held, so it must not block.
        self._on_change = on_change or (lambda request_id: None)

    @property
    def workers(self) -> int:
        return len(self._slots)

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Recover from a previous run, start the worker processes and their slot threads."""
        self._store.fail_interrupted_jobs(time.time())
        with self._cond:
            # Jobs that were still queued never started: they keep their place in line.
            for job in self._store.jobs_with_status(IN_QUEUE):
                self._enqueue(job)
        for slot in self._slots:
            slot.ensure_started()
            thread = threading.Thread(target=self._serve_slot, args=(slot,), name=f"model-slot-{slot.index}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(5)
        for slot in self._slots:
            slot.stop()

    # -- client operations ----------------------------------------------------------------
    def submit(self, model_id: str, payload: dict[str, Any], base_url: str,
               idempotency_key: str | None) -> tuple[Job, bool]:
        """Queue a job, or find the one this idempotency key already made. Returns (job, replay)."""
        now = time.time()
        with self._cond:
            if idempotency_key:
                existing = self._store.find_by_idempotency_key(model_id, idempotency_key)
                if existing is not None:
                    self._store.record_submission(model_id, existing.request_id, idempotency_key, True, now)
                    return existing, True
            job = Job(request_id=str(uuid.uuid4()), model_id=model_id, input=payload, base_url=base_url,
                      idempotency_key=idempotency_key, status=IN_QUEUE, created_at=now)
            self._store.create(job)
            self._store.record_submission(model_id, job.request_id, idempotency_key, False, now)
            self._enqueue(job)
            self._note_in_flight()
            self._cond.notify_all()
            return job, False

    def queue_position(self, request_id: str) -> int | None:
        """0 for the next job to start; None when the job is not waiting."""
        with self._cond:
            try:
                return self._queue.index(request_id)
            except ValueError:
                return None

    def cancel(self, request_id: str) -> bool:
        """Request cancellation; False when the job had already completed."""
        with self._cond:
            job = self._store.get(request_id)
            if job is None or job.status == COMPLETED:
                return False
            if request_id in self._queue:
                self._queue.remove(request_id)
                self._queued.pop(request_id, None)
                self._finish_cancelled(request_id, None)
                return True
            if job.status == IN_PROGRESS:
                self._cancel_requested.add(request_id)
                return True
            return False

    # -- stats ----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._cond:
            since = self._stats_since
            snapshot = {
                "workers": len(self._slots),
                "running": len(self._running),
                "queued": len(self._queue),
                "max_running": self._max_running,
                "max_outstanding": self._max_outstanding,
                "since": since,
            }
        snapshot["submissions"] = self._store.submissions(since)
        snapshot["jobs"] = self._store.finished_jobs(since)
        return snapshot

    def reset_stats(self) -> None:
        """Start a new record: forget past submissions and restart the maxima from what is in flight now."""
        with self._cond:
            self._stats_since = time.time()
            self._max_running = len(self._running)
            self._max_outstanding = len(self._running) + len(self._queue)

    def _note_in_flight(self) -> None:
        running = len(self._running)
        self._max_running = max(self._max_running, running)
        self._max_outstanding = max(self._max_outstanding, running + len(self._queue))

    # -- slots ----------------------------------------------------------------------------
    def _enqueue(self, job: Job) -> None:
        self._queue.append(job.request_id)
        self._queued[job.request_id] = (job.model_id, time.monotonic())

    def _wait_before_taking(self, slot: _Slot, request_id: str) -> float | None:
        """Seconds ``slot`` leaves the job at the head of the queue to others: 0 to take it now,
        None to wait until something changes (a slot that has the model is idle: it takes it)."""
        model_id, queued_at = self._queued[request_id]
        if slot.has(model_id):
            return 0.0
        holders = [other for other in self._slots if other is not slot and other.has(model_id)]
        if not holders:
            return 0.0  # no process has loaded it: the first idle slot does
        if any(other.index in self._idle for other in holders):
            return None
        return max(0.0, queued_at + COLD_START_DELAY_S - time.monotonic())

    def _serve_slot(self, slot: _Slot) -> None:
        while True:
            with self._cond:
                self._idle.add(slot.index)
                release = False
                try:
                    while not self._stopping:
                        wait = self._wait_before_taking(slot, self._queue[0]) if self._queue else None
                        if wait == 0.0:
                            break
                        kept = slot.keep_alive_left(self._keep_alive_s)
                        if kept is not None and kept <= 0:
                            # Bare from now on: queued jobs are no longer left to it for its models.
                            slot.models = set()
                            release = True
                            break
                        self._cond.wait(kept if wait is None else wait if kept is None else min(wait, kept))
                finally:
                    self._idle.discard(slot.index)
                if self._stopping:
                    return
                # The jobs left in line may now be for the bare slots (this one among them).
                self._cond.notify_all()
                if not release:
                    request_id = self._queue.popleft()
                    self._queued.pop(request_id, None)
                    self._store.mark_running(request_id, time.time())
                    self._on_change(request_id)
                    self._running[request_id] = slot
                    self._note_in_flight()
            if release:
                slot.release_models()
                continue
            job = self._store.get(request_id)
            try:
                self._run_on(slot, job, self._faults.for_job(job.model_id))
            except Exception as exc:  # noqa: BLE001 - a slot thread must survive any single job
                with self._cond:
                    self._finish_failed(request_id, INTERNAL_ERROR, f"Model server error: {exc}", 500, None)
                slot.stop()
            finally:
                with self._cond:
                    self._running.pop(request_id, None)
                    self._cancel_requested.discard(request_id)
                    slot.last_used = time.monotonic()

    def _run_on(self, slot: _Slot, job: Job, faults: JobFaults) -> None:
        slot.ensure_started()
        slot.conn.send({
            "request_id": job.request_id,
            "model_id": job.model_id,
            "input": job.input,
            "base_url": job.base_url,
            "faults": {"latency_s": faults.latency_s, "fail": faults.fail, "hang": faults.hang},
        })
        request_id = job.request_id
        while True:
            with self._cond:
                if request_id in self._cancel_requested:
                    # Killing is the only way to stop arbitrary stage code; a fresh worker takes the slot.
                    slot.stop()
                    self._finish_cancelled(request_id, None)
                    slot_needs_restart = True
                elif self._stopping:
                    # The job stays IN_PROGRESS; the next start marks it server_restarted.
                    slot.stop()
                    return
                else:
                    slot_needs_restart = False
            if slot_needs_restart:
                slot.ensure_started()
                return
            ready = wait_for_ready([slot.conn, slot.process.sentinel], timeout=_CANCEL_CHECK_S)
            if not ready:
                continue
            try:
                message = slot.conn.recv() if slot.conn.poll() else None
            except (EOFError, OSError):
                message = None
            if message is None:
                if slot.process.is_alive() and not slot.conn.closed:
                    continue
                code = slot.process.exitcode
                slot.stop()
                with self._cond:
                    self._finish_failed(request_id, WORKER_CRASHED,
                                        f"The worker process died (exit code {code})", 500, None)
                slot.ensure_started()
                return
            kind = message[0]
            if kind == "log":
                _, level, text, timestamp = message
                self._store.add_log(request_id, level, text, timestamp)
                continue
            with self._cond:
                if request_id in self._cancel_requested:
                    # Cancelled while finishing: the result is discarded, as promised to the client.
                    self._finish_cancelled(request_id, message[-1])
                elif kind == "done":
                    if slot.models is not None:
                        slot.models.add(job.model_id)  # its process has loaded what this stage needs
                    _, result, seconds = message
                    self._store.mark_succeeded(request_id, result, seconds, time.time())
                    self._on_change(request_id)
                else:
                    _, error_type, text, http_status, seconds = message
                    self._finish_failed(request_id, error_type, text, http_status, seconds)
            return

    # Both called with self._cond held.
    def _finish_cancelled(self, request_id: str, seconds: float | None) -> None:
        self._finish_failed(request_id, CANCELLED, "The request was cancelled", 422, seconds)

    def _finish_failed(self, request_id: str, error_type: str, message: str, http_status: int,
                       seconds: float | None) -> None:
        self._store.mark_failed(request_id, error_type, message, http_status, seconds, time.time())
        self._on_change(request_id)
