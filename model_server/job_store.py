"""Durable state of the model server: jobs, their logs and the submission record, in SQLite.

The store is the source of truth for every job's status and result, so a restarted server
still answers for jobs it finished before. It knows nothing about processes or HTTP; the
job manager (``worker_pool``) drives the transitions and keeps the in-memory FIFO.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"

# error_type of jobs that were running when the server went away.
SERVER_RESTARTED = "server_restarted"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    model_id TEXT NOT NULL,
    input_json TEXT NOT NULL,
    base_url TEXT NOT NULL,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    result_json TEXT,
    error TEXT,
    error_type TEXT,
    error_status INTEGER,
    inference_time REAL,
    done_reported_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency
    ON jobs (model_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS job_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    timestamp TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_logs_request ON job_logs (request_id, id);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    idempotency_key TEXT,
    replay INTEGER NOT NULL,
    at REAL NOT NULL
);
"""


@dataclass
class Job:
    request_id: str
    model_id: str
    input: dict[str, Any]
    base_url: str
    idempotency_key: str | None
    status: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    # HTTP status the result endpoint answers for a failed job: 422 business error, 500 internal.
    error_status: int | None = None
    inference_time: float | None = None
    # When a status answer first told a client the job had finished (stats: polling latency).
    done_reported_at: float | None = None

    @property
    def failed(self) -> bool:
        return self.status == COMPLETED and self.error_type is not None


class JobStore:
    """Thread-safe access to ``jobs.db``; one connection shared under a lock (calls are short)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # A purged job's input (a user's photo URL or data: URI) is overwritten with zeros on disk,
        # not left in free pages of jobs.db until they happen to be reused.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        if "done_reported_at" not in columns:  # a jobs.db from before the column
            self._db.execute("ALTER TABLE jobs ADD COLUMN done_reported_at REAL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- jobs ---------------------------------------------------------------------------
    def create(self, job: Job) -> None:
        """Insert a new job; raises sqlite3.IntegrityError if its idempotency key is taken."""
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (request_id, model_id, input_json, base_url, idempotency_key, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.request_id, job.model_id, json.dumps(job.input), job.base_url, job.idempotency_key,
                 job.status, job.created_at),
            )

    def get(self, request_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE request_id = ?", (request_id,)).fetchone()
        return _job_from_row(row) if row else None

    def find_by_idempotency_key(self, model_id: str, key: str) -> Job | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM jobs WHERE model_id = ? AND idempotency_key = ?", (model_id, key)
            ).fetchone()
        return _job_from_row(row) if row else None

    def jobs_with_status(self, status: str) -> list[Job]:
        """Jobs in a status, in submission order."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE status = ? ORDER BY seq", (status,)).fetchall()
        return [_job_from_row(r) for r in rows]

    def mark_running(self, request_id: str, started_at: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, started_at = ? WHERE request_id = ?", (IN_PROGRESS, started_at, request_id)
            )

    def mark_succeeded(self, request_id: str, result: dict[str, Any], inference_time: float, finished_at: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, result_json = ?, inference_time = ?, finished_at = ? WHERE request_id = ?",
                (COMPLETED, json.dumps(result), inference_time, finished_at, request_id),
            )

    def mark_failed(self, request_id: str, error_type: str, message: str, http_status: int,
                    inference_time: float | None, finished_at: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, error_type = ?, error_status = ?, inference_time = ?,"
                " finished_at = ? WHERE request_id = ?",
                (COMPLETED, message, error_type, http_status, inference_time, finished_at, request_id),
            )

    def mark_done_reported(self, request_id: str, at: float) -> None:
        """Record the first status answer that reported the job finished."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET done_reported_at = ? WHERE request_id = ? AND done_reported_at IS NULL", (at, request_id)
            )

    def fail_interrupted_jobs(self, finished_at: float) -> int:
        """At start-up: jobs left IN_PROGRESS by a previous server process can never finish."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, error_type = ?, error_status = 500, finished_at = ?"
                " WHERE status = ?",
                (COMPLETED, "The model server restarted while this request was running", SERVER_RESTARTED,
                 finished_at, IN_PROGRESS),
            )
            return cur.rowcount

    def finished_jobs(self, since: float) -> list[dict[str, Any]]:
        """Compute record of jobs finished since a time (for stats)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT request_id, model_id, error_type, inference_time, created_at, started_at, finished_at,"
                " done_reported_at FROM jobs WHERE status = ? AND finished_at >= ? ORDER BY finished_at",
                (COMPLETED, since),
            ).fetchall()
        return [
            {
                "request_id": r["request_id"],
                "model_id": r["model_id"],
                "error_type": r["error_type"],
                "compute_seconds": r["inference_time"],
                "queued_seconds": (r["started_at"] - r["created_at"]) if r["started_at"] else None,
                "started_at": r["started_at"],
                "finished_at": r["finished_at"],
                "done_reported_at": r["done_reported_at"],
            }
            for r in rows
        ]

    def purge_finished(self, *, key_prefix: str | None = None, finished_before: float | None = None) -> list[str]:
        """Forget finished jobs (their inputs, results, logs and submission records) whose idempotency
        key starts with ``key_prefix`` or that finished before ``finished_before``; returns their
        request ids.

        Jobs still queued or running are kept: their worker writes to them.
        """
        if key_prefix is None and finished_before is None:
            raise ValueError("purge_finished needs a key prefix or a time")
        where, args = ["status = ?"], [COMPLETED]
        if key_prefix is not None:
            escaped = key_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("idempotency_key LIKE ? ESCAPE '\\'")
            args.append(escaped + "%")
        if finished_before is not None:
            where.append("finished_at < ?")
            args.append(finished_before)
        with self._lock:
            rows = self._db.execute(f"SELECT request_id FROM jobs WHERE {' AND '.join(where)}", args).fetchall()
            ids = [r["request_id"] for r in rows]
            for request_id in ids:
                self._db.execute("DELETE FROM job_logs WHERE request_id = ?", (request_id,))
                self._db.execute("DELETE FROM submissions WHERE request_id = ?", (request_id,))
                self._db.execute("DELETE FROM jobs WHERE request_id = ?", (request_id,))
        return ids

    def known_request_ids(self) -> set[str]:
        with self._lock:
            return {r["request_id"] for r in self._db.execute("SELECT request_id FROM jobs").fetchall()}

    # -- logs ---------------------------------------------------------------------------
    def add_log(self, request_id: str, level: str, message: str, timestamp: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO job_logs (request_id, level, message, timestamp) VALUES (?, ?, ?, ?)",
                (request_id, level, message, timestamp),
            )

    def logs(self, request_id: str) -> list[dict[str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT level, message, timestamp FROM job_logs WHERE request_id = ? ORDER BY id", (request_id,)
            ).fetchall()
        return [{"message": r["message"], "level": r["level"], "timestamp": r["timestamp"]} for r in rows]

    # -- submission record --------------------------------------------------------------
    def record_submission(self, model_id: str, request_id: str, idempotency_key: str | None, replay: bool,
                          at: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO submissions (model_id, request_id, idempotency_key, replay, at) VALUES (?, ?, ?, ?, ?)",
                (model_id, request_id, idempotency_key, int(replay), at),
            )

    def submissions(self, since: float) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT model_id, request_id, idempotency_key, replay, at FROM submissions WHERE at >= ? ORDER BY id",
                (since,),
            ).fetchall()
        return [
            {"model_id": r["model_id"], "request_id": r["request_id"], "idempotency_key": r["idempotency_key"],
             "replay": bool(r["replay"]), "at": r["at"]}
            for r in rows
        ]


def _job_from_row(row: sqlite3.Row) -> Job:
    return Job(
        request_id=row["request_id"],
        model_id=row["model_id"],
        input=json.loads(row["input_json"]),
        base_url=row["base_url"],
        idempotency_key=row["idempotency_key"],
        status=row["status"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=json.loads(row["result_json"]) if row["result_json"] else None,
        error=row["error"],
        error_type=row["error_type"],
        error_status=row["error_status"],
        inference_time=row["inference_time"],
        done_reported_at=row["done_reported_at"],
    )
