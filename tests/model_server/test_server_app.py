"""fal.ai queue protocol of the model server, through a real server process, with the selftest model."""

from __future__ import annotations

import os
import signal
import time

from tests.model_server.conftest import ModelServerProcess

SELFTEST = "bitbuddies/selftest"


def test_submit_status_result_with_logs_and_metrics(clean_server: ModelServerProcess) -> None:
    srv = clean_server
    submitted = srv.submit(SELFTEST, {"seconds": 0.6})
    rid = submitted["request_id"]
    base = f"{srv.url}/{SELFTEST}/requests/{rid}"
    assert submitted["status_url"] == f"{base}/status"
    assert submitted["response_url"] == base
    assert submitted["cancel_url"] == f"{base}/cancel"
    assert submitted["queue_position"] in (0, None)

    early = srv.client.get(submitted["response_url"])
    assert early.status_code == 400
    assert early.json() == {"detail": "Request is still in progress"}
    running = srv.status(submitted)
    assert running.status_code == 202
    assert running.json()["status"] in ("IN_QUEUE", "IN_PROGRESS")

    done = srv.wait_for(submitted)
    final = srv.status(submitted, logs=True)
    assert final.status_code == 200
    assert done["metrics"]["inference_time"] >= 0.6
    assert "error" not in done
    messages = [entry["message"] for entry in final.json()["logs"]]
    assert messages[0].startswith("Selftest: sleeping") and messages[-1] == "Selftest: done"
    assert set(final.json()["logs"][0]) == {"message", "level", "timestamp"}

    result = srv.client.get(submitted["response_url"])
    assert result.status_code == 200
    assert result.json() == {"ok": True}


def test_unknown_model_invalid_input_and_unknown_request(clean_server: ModelServerProcess) -> None:
    srv = clean_server
    assert srv.client.post("/bitbuddies/no-such-model", json={}).status_code == 404
    invalid = srv.client.post(f"/{SELFTEST}", json={"seconds": "soon"})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["seconds"]
    bad_url = srv.client.post("/bitbuddies/analyze", json={"image_url": "ftp://example.com/x.png"})
    assert bad_url.status_code == 422
    missing = srv.client.get(f"/{SELFTEST}/requests/00000000-0000-0000-0000-000000000000/status")
    assert missing.status_code == 404
    # A request is only known under the model it was submitted to.
    submitted = srv.submit(SELFTEST, {"seconds": 0})
    assert srv.client.get(f"/bitbuddies/analyze/requests/{submitted['request_id']}").status_code == 404


def test_idempotency_key_replays_the_same_request(clean_server: ModelServerProcess) -> None:
    srv = clean_server
    first = srv.submit(SELFTEST, {"seconds": 0.2}, headers={"Idempotency-Key": "gen-1:animate"})
    again = srv.submit(SELFTEST, {"seconds": 0.2}, headers={"Idempotency-Key": "gen-1:animate"})
    other = srv.submit(SELFTEST, {"seconds": 0.2}, headers={"Idempotency-Key": "gen-2:animate"})
    assert again["request_id"] == first["request_id"]
    assert other["request_id"] != first["request_id"]
    srv.wait_for(first)
    srv.wait_for(other)
    # A replay after completion still names the finished job.
    late = srv.submit(SELFTEST, {"seconds": 0.2}, headers={"Idempotency-Key": "gen-1:animate"})
    assert late["request_id"] == first["request_id"]

    stats = srv.client.get("/_admin/stats").json()
    record = [(s["request_id"], s["idempotency_key"], s["replay"]) for s in stats["submissions"]]
    assert record == [
        (first["request_id"], "gen-1:animate", False),
        (first["request_id"], "gen-1:animate", True),
        (other["request_id"], "gen-2:animate", False),
        (first["request_id"], "gen-1:animate", True),
    ]
    # One job per key, however often it was submitted (jobs of earlier tests may finish in this record too).
    finished = [job["request_id"] for job in stats["jobs"]]
    assert finished.count(first["request_id"]) == 1 and finished.count(other["request_id"]) == 1


def test_fifo_queue_positions_and_in_flight_record(clean_server: ModelServerProcess) -> None:
    srv = clean_server
    blockers = [srv.submit(SELFTEST, {"seconds": 1.2}) for _ in range(2)]
    for blocker in blockers:
        srv.wait_for(blocker, "IN_PROGRESS", timeout=10)
    waiting = [srv.submit(SELFTEST, {"seconds": 0.05}) for _ in range(3)]
    positions = []
    for submitted in waiting:
        response = srv.status(submitted)
        assert response.status_code == 202
        assert response.json()["status"] == "IN_QUEUE"
        positions.append(response.json()["queue_position"])
    assert positions == [0, 1, 2]
    assert [s["queue_position"] for s in waiting] == [0, 1, 2]

    for submitted in blockers + waiting:
        srv.wait_for(submitted)
    stats = srv.client.get("/_admin/stats").json()
    assert stats["max_running"] == 2 == stats["workers"]
    assert stats["max_outstanding"] == 5
    assert stats["running"] == 0 and stats["queued"] == 0
    # FIFO: the waiting jobs were dispatched in submission order (the server's own dispatch times;
    # finish minus compute time is off by the result hand-over and is no order).
    started = {job["request_id"]: job["started_at"] for job in stats["jobs"]}
    order = [started[s["request_id"]] for s in waiting]
    assert order == sorted(order)


def test_failed_jobs_answer_422_or_500_with_error_type(clean_server: ModelServerProcess) -> None:
    srv = clean_server
    business = srv.submit(SELFTEST, {"fail": "no_usable_subject"})
    internal = srv.submit(SELFTEST, {"fail": "internal_error"})

    status = srv.wait_for(business)
    assert status["error_type"] == "no_usable_subject"
    assert "no_usable_subject" in status["error"]
    result = srv.client.get(business["response_url"])
    assert result.status_code == 422
    assert result.json()["error_type"] == "no_usable_subject"
    assert result.headers["X-Fal-Error-Type"] == "no_usable_subject"

    srv.wait_for(internal)
    result = srv.client.get(internal["response_url"])
    assert result.status_code == 500
    assert result.json()["error_type"] == "internal_error"
    assert result.headers["X-Fal-Error-Type"] == "internal_error"


def test_cancel_queued_and_running_jobs(clean_server: ModelServerProcess) -> None:
    srv = clean_server
    running = [srv.submit(SELFTEST, {"seconds": 60}) for _ in range(2)]
    for submitted in running:
        srv.wait_for(submitted, "IN_PROGRESS", timeout=10)
    queued = srv.submit(SELFTEST, {"seconds": 0})

    answer = srv.client.put(queued["cancel_url"])
    assert answer.status_code == 202 and answer.json() == {"status": "CANCELLATION_REQUESTED"}
    assert srv.wait_for(queued, timeout=2)["error_type"] == "cancelled"

    t0 = time.monotonic()
    for submitted in running:
        assert srv.client.put(submitted["cancel_url"]).status_code == 202
    for submitted in running:
        assert srv.wait_for(submitted, timeout=5)["error_type"] == "cancelled"
        assert srv.client.get(submitted["response_url"]).json()["error_type"] == "cancelled"
    assert time.monotonic() - t0 < 5, "running jobs must be killed, not waited for"

    again = srv.client.put(queued["cancel_url"])
    assert again.status_code == 400 and again.json() == {"status": "ALREADY_COMPLETED"}

    # The killed workers were replaced: new jobs still run on both slots.
    after = [srv.submit(SELFTEST, {"seconds": 0.3}) for _ in range(2)]
    for submitted in after:
        assert srv.client.get(srv.wait_for(submitted)["response_url"]).json() == {"ok": True}
    stats = srv.client.get("/_admin/stats").json()
    compute = {job["request_id"]: job["compute_seconds"] for job in stats["jobs"]}
    assert compute[queued["request_id"]] is None, "a cancelled queued job never starts"


def test_fault_injection(clean_server: ModelServerProcess) -> None:
    srv = clean_server
    faults = {"fail_next": {SELFTEST: 1}, "latency_s": {SELFTEST: 0.5}, "hang": {"bitbuddies/moderate": True}}
    assert srv.client.post("/_admin/faults", json=faults).status_code == 200
    assert srv.client.post("/_admin/faults", json={"no_such_knob": 1}).status_code == 422

    failed = srv.submit(SELFTEST, {"seconds": 0})
    status = srv.wait_for(failed)
    assert status["error_type"] == "injected_failure"
    assert srv.client.get(failed["response_url"]).status_code == 500
    slow = srv.submit(SELFTEST, {"seconds": 0})  # fail_next is used up; latency remains
    t0 = time.monotonic()
    srv.wait_for(slow)
    assert time.monotonic() - t0 >= 0.4
    assert srv.client.get(slow["response_url"]).json() == {"ok": True}

    hung = srv.submit("bitbuddies/moderate", {"image_url": "data:image/png;base64,AAAA"})
    srv.wait_for(hung, "IN_PROGRESS", timeout=10)
    time.sleep(0.5)
    assert srv.status(hung).json()["status"] == "IN_PROGRESS"
    assert srv.client.put(hung["cancel_url"]).status_code == 202
    assert srv.wait_for(hung, timeout=5)["error_type"] == "cancelled"

    assert srv.client.post("/_admin/faults", json={"http_429_rate": 1.0}).status_code == 200
    limited = srv.status(slow)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert srv.client.get(slow["response_url"]).status_code == 429
    assert srv.client.post("/_admin/faults", json={"http_5xx_rate": 1.0}).status_code == 200
    assert srv.status(slow).status_code == 503
    # Submissions are not subject to HTTP faults (a submit must not be retried blindly).
    assert srv.client.post(f"/{SELFTEST}", json={"seconds": 0}).status_code == 200
    assert srv.client.post("/_admin/faults", json={}).status_code == 200
    assert srv.status(slow).status_code == 200


def test_answer_delays_hold_submit_and_result_answers(clean_server: ModelServerProcess) -> None:
    srv = clean_server
    delays = {"submit_answer_delay_s": {SELFTEST: 0.6}, "result_answer_delay_s": {"*": 0.6}}
    assert srv.client.post("/_admin/faults", json=delays).status_code == 200
    t0 = time.monotonic()
    submitted = srv.submit(SELFTEST, {"seconds": 0})
    assert time.monotonic() - t0 >= 0.6
    # The job existed before the answer: it is in the record and may already have run.
    assert [s["request_id"] for s in srv.client.get("/_admin/stats").json()["submissions"]] == [submitted["request_id"]]
    srv.wait_for(submitted)
    t0 = time.monotonic()
    assert srv.client.get(submitted["response_url"]).json() == {"ok": True}
    assert time.monotonic() - t0 >= 0.6


def test_fal_mode_requires_the_key(tmp_path) -> None:
    srv = ModelServerProcess(tmp_path, model_server_fal_mode="true", model_server_key="secret-key").start()
    try:
        assert srv.client.post(f"/{SELFTEST}", json={}).status_code == 401
        wrong = srv.client.post(f"/{SELFTEST}", json={}, headers={"Authorization": "Key nope"})
        assert wrong.status_code == 401 and wrong.json()["error_type"] == "unauthorized"
        auth = {"Authorization": "Key secret-key"}
        submitted = srv.submit(SELFTEST, {"seconds": 0}, headers=auth)
        assert srv.client.get(submitted["status_url"]).status_code == 401
        assert srv.client.get(f"{submitted['status_url']}/stream").status_code == 401
        srv.wait_for(submitted, headers=auth)
        streamed = srv.client.get(f"{submitted['status_url']}/stream", headers=auth)
        assert streamed.status_code == 200 and '"status": "COMPLETED"' in streamed.text
        assert srv.client.get(submitted["response_url"], headers=auth).json() == {"ok": True}
        # fal has no idempotency key: the same key twice is two jobs.
        keyed = {**auth, "Idempotency-Key": "same"}
        first, second = (srv.submit(SELFTEST, {"seconds": 0}, headers=keyed) for _ in range(2))
        assert first["status"] == "IN_QUEUE" and first["request_id"] != second["request_id"]
    finally:
        srv.close()


def test_the_status_stream_can_be_switched_off(tmp_path) -> None:
    """As a provider without one: 404 (the triggers then poll; the triggerer benchmark compares)."""
    srv = ModelServerProcess(tmp_path, model_server_status_stream="false").start()
    try:
        submitted = srv.submit(SELFTEST, {"seconds": 0})
        assert srv.client.get(f"{submitted['status_url']}/stream").status_code == 404
        assert srv.wait_for(submitted)["status"] == "COMPLETED"
    finally:
        srv.close()


def test_restart_keeps_finished_results_and_fails_interrupted_jobs(tmp_path) -> None:
    srv = ModelServerProcess(tmp_path).start()
    try:
        finished = srv.submit(SELFTEST, {"seconds": 0})
        srv.wait_for(finished)
        interrupted = srv.submit(SELFTEST, {"seconds": 60})
        srv.wait_for(interrupted, "IN_PROGRESS", timeout=10)
        srv.stop(signal.SIGKILL)  # a crash: no chance to clean up

        srv.start()
        assert srv.client.get(finished["response_url"]).json() == {"ok": True}
        status = srv.status(interrupted)
        assert status.status_code == 200
        assert status.json()["error_type"] == "server_restarted"
        assert srv.client.get(interrupted["response_url"]).status_code == 500
    finally:
        srv.close()


def test_purge_forgets_finished_jobs_by_key_prefix_or_age_and_keeps_running_ones(clean_server: ModelServerProcess) -> None:
    srv = clean_server
    mine = srv.submit(SELFTEST, {"seconds": 0}, headers={"Idempotency-Key": "bitbuddies_generate:g1:animate:-1:1"})
    other = srv.submit(SELFTEST, {"seconds": 0}, headers={"Idempotency-Key": "bitbuddies_generate:g10:animate:-1:1"})
    running = srv.submit(SELFTEST, {"seconds": 30}, headers={"Idempotency-Key": "bitbuddies_generate:g1:segment:-1:1"})
    srv.wait_for(mine), srv.wait_for(other)
    files = srv.var_dir / "model_server" / "files" / mine["request_id"]
    files.mkdir(parents=True, exist_ok=True)
    (files / "frame.png").write_bytes(b"x")

    # The prefix is matched literally up to its colon: g1's does not reach g10's jobs.
    purged = srv.client.post("/_admin/purge", json={"idempotency_key_prefix": "bitbuddies_generate:g1:"})
    assert purged.json() == {"purged": 1}
    assert srv.status(mine).status_code == 404 and not files.exists()
    assert srv.status(other).status_code == 200 and srv.status(running).status_code == 202

    assert srv.client.post("/_admin/purge", json={}).status_code == 422
    # Files that belong to no job, as old as the cutoff, go with the age purge; younger ones stay.
    files_root = srv.var_dir / "model_server" / "files"
    orphan, fresh = files_root / "orphan-old", files_root / "orphan-new"
    for folder in (orphan, fresh):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cutout.png").write_bytes(b"x")
    os.utime(orphan, (time.time() - 3600, time.time() - 3600))
    assert srv.client.post("/_admin/purge", json={"finished_before": time.time() - 60}).status_code == 200
    assert not orphan.exists() and fresh.exists()
    assert srv.client.post("/_admin/purge", json={"finished_before": time.time() + 1}).json()["purged"] >= 1  # the module's other finished jobs too
    assert srv.status(other).status_code == 404
    srv.client.put(running["cancel_url"])


def test_status_stream_pushes_queue_position_start_and_completion(clean_server: ModelServerProcess) -> None:
    """fal's status stream: the current status at once, then every change as a server-sent event,
    closed after COMPLETED; the completion arrives as soon as the job ends (no poll interval)."""
    import json

    srv = clean_server
    blockers = [srv.submit(SELFTEST, {"seconds": 1.0}) for _ in range(2)]
    for blocker in blockers:
        srv.wait_for(blocker, "IN_PROGRESS", timeout=10)
    waiting = srv.submit(SELFTEST, {"seconds": 0.3})
    events, lines = [], []
    with srv.client.stream("GET", f"{waiting['status_url']}/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("data:"):
                events.append((time.monotonic(), json.loads(line[5:])))
    states = [body["status"] for _, body in events]
    assert states[0] == "IN_QUEUE" and events[0][1]["queue_position"] == 0
    assert states[-1] == "COMPLETED" and "IN_PROGRESS" in states
    # One event per change (no repeats), each ended by the blank line of the SSE format.
    assert len({json.dumps(body, sort_keys=True) for _, body in events}) == len(events)
    assert lines[-1] == ""
    done = events[-1][1]
    assert done["metrics"]["inference_time"] >= 0.3 and "error" not in done
    # Pushed when the job finished: the server records when a client first heard of it.
    stats = srv.client.get("/_admin/stats").json()
    job = next(j for j in stats["jobs"] if j["request_id"] == waiting["request_id"])
    assert 0 <= job["done_reported_at"] - job["finished_at"] < 0.5

    missing = srv.client.get(f"{srv.url}/{SELFTEST}/requests/00000000-0000-0000-0000-000000000000/status/stream")
    assert missing.status_code == 404
