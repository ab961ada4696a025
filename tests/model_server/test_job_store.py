"""Job state in SQLite: transitions, idempotency keys, logs, restart recovery and the record."""

from __future__ import annotations

import sqlite3

import pytest

from model_server.job_store import COMPLETED, IN_PROGRESS, IN_QUEUE, SERVER_RESTARTED, Job, JobStore


def new_job(request_id: str, key: str | None = None, at: float = 100.0) -> Job:
    return Job(request_id=request_id, model_id="m/a", input={"x": 1}, base_url="http://h", idempotency_key=key,
               status=IN_QUEUE, created_at=at)


def test_transitions_survive_reopening(tmp_path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.create(new_job("done", key="k1"))
    store.create(new_job("running", at=101.0))
    store.create(new_job("queued", at=102.0))
    store.mark_running("done", 100.5)
    store.mark_succeeded("done", {"ok": True}, 1.25, 101.75)
    store.mark_running("running", 102.0)
    store.add_log("done", "INFO", "hello", "2026-01-01T00:00:00+00:00")
    store.close()

    store = JobStore(tmp_path / "jobs.db")
    assert store.fail_interrupted_jobs(200.0) == 1
    done = store.get("done")
    assert (done.status, done.result, done.inference_time, done.failed) == (COMPLETED, {"ok": True}, 1.25, False)
    running = store.get("running")
    assert running.failed and running.error_type == SERVER_RESTARTED and running.error_status == 500
    assert [j.request_id for j in store.jobs_with_status(IN_QUEUE)] == ["queued"]
    assert store.jobs_with_status(IN_PROGRESS) == []
    assert store.logs("done") == [{"message": "hello", "level": "INFO", "timestamp": "2026-01-01T00:00:00+00:00"}]
    assert store.find_by_idempotency_key("m/a", "k1").request_id == "done"
    assert store.find_by_idempotency_key("m/b", "k1") is None
    store.close()


def test_idempotency_key_is_unique_per_model(tmp_path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.create(new_job("a", key="same"))
    with pytest.raises(sqlite3.IntegrityError):
        store.create(new_job("b", key="same"))
    store.create(new_job("c"))
    store.create(new_job("d"))  # jobs without a key never collide


def test_submission_record_and_finished_jobs_since(tmp_path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.record_submission("m/a", "a", "k", False, 10.0)
    store.record_submission("m/a", "a", "k", True, 20.0)
    assert [s["replay"] for s in store.submissions(15.0)] == [True]
    store.create(new_job("a", at=10.0))
    store.mark_running("a", 12.0)
    store.mark_failed("a", "cancelled", "The request was cancelled", 422, 0.5, 30.0)
    assert store.finished_jobs(25.0) == [{"request_id": "a", "model_id": "m/a", "error_type": "cancelled",
                                         "compute_seconds": 0.5, "queued_seconds": 2.0, "started_at": 12.0,
                                         "finished_at": 30.0, "done_reported_at": None}]
    assert store.finished_jobs(31.0) == []


def test_the_first_status_answer_reporting_the_end_is_recorded_once(tmp_path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.create(new_job("a", at=10.0))
    store.mark_succeeded("a", {}, 0.1, 11.0)
    store.mark_done_reported("a", 12.0)
    store.mark_done_reported("a", 14.0)
    assert store.get("a").done_reported_at == 12.0
    assert store.finished_jobs(0.0)[0]["done_reported_at"] == 12.0


def test_a_jobs_db_from_before_done_reported_at_gains_the_column(tmp_path) -> None:
    db = sqlite3.connect(tmp_path / "jobs.db")
    db.executescript(
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE, model_id TEXT NOT NULL,"
        " input_json TEXT NOT NULL, base_url TEXT NOT NULL, idempotency_key TEXT, status TEXT NOT NULL,"
        " created_at REAL NOT NULL, started_at REAL, finished_at REAL, result_json TEXT, error TEXT, error_type TEXT,"
        " error_status INTEGER, inference_time REAL);"
    )
    db.close()
    store = JobStore(tmp_path / "jobs.db")
    store.create(new_job("a", at=10.0))
    assert store.get("a").done_reported_at is None


def test_a_purged_job_leaves_nothing_of_its_input_on_disk(tmp_path) -> None:
    """Its row, logs and submission record go, and SQLite overwrites the freed pages (secure_delete):
    a photo sent inline is not left readable in jobs.db."""
    photo = "data:image/png;base64," + "UEhPVE8tT0YtQS1VU0VS" * 200
    store = JobStore(tmp_path / "jobs.db")
    job = new_job("r1", key="bitbuddies_generate:g1:segment:-1:1")
    job.input = {"image_url": photo}
    store.create(job)
    store.record_submission("m/a", "r1", job.idempotency_key, False, 100.0)
    store.add_log("r1", "INFO", "segmenting", "2026-01-01T00:00:00+00:00")
    store.mark_running("r1", 100.5)
    store.mark_succeeded("r1", {"ok": True}, 1.0, 101.0)
    store.create(new_job("r2", key="bitbuddies_generate:g2:segment:-1:1"))

    assert store.purge_finished(key_prefix="bitbuddies_generate:g1:") == ["r1"]
    assert store.get("r1") is None and store.logs("r1") == [] and store.submissions(0) == []
    assert store.known_request_ids() == {"r2"}
    store.close()  # the last connection checkpoints the WAL into jobs.db and removes it
    assert b"UEhPVE8tT0YtQS1VU0VS" not in (tmp_path / "jobs.db").read_bytes()
