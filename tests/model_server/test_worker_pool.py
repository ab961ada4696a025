"""The job manager's worker processes: one set of models loaded while idle, warm workers first."""

from __future__ import annotations

import time

import pytest

from model_server.fault_injection import Faults
from model_server.job_store import JobStore
from model_server.worker_pool import JobManager

SELFTEST = "bitbuddies/selftest"


def wait_done(store: JobStore, request_id: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while store.get(request_id).status not in ("COMPLETED",) and time.time() < deadline:
        time.sleep(0.05)
    assert store.get(request_id).status == "COMPLETED", store.get(request_id)


def test_jobs_go_to_the_warm_worker_while_it_is_idle_and_to_the_bare_one_under_load(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    manager = JobManager(store, Faults(), workers=2, files_root=tmp_path, max_input_bytes=1024, warm_workers=1)
    slots = {slot.index: slot for slot in manager._slots}
    assert (slots[0].warm, slots[1].warm) == (True, False)
    manager.start()
    try:
        taken_by = []
        for _ in range(3):  # one at a time: always the warm worker, the bare one stays bare
            job, _ = manager.submit(SELFTEST, {"seconds": 0.2}, "http://x", None)
            while job.request_id not in manager._running and store.get(job.request_id).status != "COMPLETED":
                time.sleep(0.01)
            taken_by.append(manager._running.get(job.request_id, slots[0]).index)
            wait_done(store, job.request_id)
        assert taken_by == [0, 0, 0] and not slots[1].warm
        # Two quick jobs at once (a generation's moderate and analyze): the second waits for the
        # warm worker rather than for a model to load in the bare one.
        jobs = [manager.submit(SELFTEST, {"seconds": 0.2}, "http://x", None)[0] for _ in range(2)]
        for job in jobs:
            wait_done(store, job.request_id)
        assert not slots[1].warm
        # Under load the bare worker takes a job once it has waited COLD_START_DELAY_S for the busy one.
        jobs = [manager.submit(SELFTEST, {"seconds": 4.0}, "http://x", None)[0] for _ in range(2)]
        deadline = time.time() + 30
        while len(manager._running) < 2 and time.time() < deadline:
            time.sleep(0.01)
        assert {slot.index for slot in manager._running.values()} == {0, 1}
        for job in jobs:
            wait_done(store, job.request_id)
        assert slots[1].warm and slots[1].has(SELFTEST)  # it has run that model: it takes its jobs at once now
        assert not slots[1].has("bitbuddies/analyze")  # not this one: it is left to the worker that has it
    finally:
        manager.stop()


def test_a_queued_job_waits_for_a_worker_that_has_its_model_before_another_loads_it(tmp_path, monkeypatch):
    from model_server import worker_pool
    from model_server.job_store import Job

    manager = JobManager(JobStore(tmp_path / "jobs.db"), Faults(), workers=3, files_root=tmp_path, max_input_bytes=1024,
                         warm_workers=1)
    warm, ran_analyze, bare = manager._slots  # not started: the rule only
    ran_analyze.models = {"bitbuddies/analyze"}
    clock = [100.0]
    monkeypatch.setattr(worker_pool.time, "monotonic", lambda: clock[0])

    def queued(model_id: str) -> str:
        job = Job(request_id=model_id, model_id=model_id, input={}, base_url="http://x", idempotency_key=None,
                  status="IN_QUEUE", created_at=0.0)
        manager._enqueue(job)
        return job.request_id

    analyze, moderate, sticker = queued("bitbuddies/analyze"), queued("bitbuddies/moderate"), queued("bitbuddies/sticker")
    # Whoever has the model takes it at once; the others leave it to an idle holder.
    assert manager._wait_before_taking(warm, analyze) == 0 == manager._wait_before_taking(ran_analyze, analyze)
    manager._idle = {warm.index}
    assert manager._wait_before_taking(bare, analyze) is None and manager._wait_before_taking(bare, moderate) is None
    # Its holders busy, another worker loads it once the job has waited COLD_START_DELAY_S.
    manager._idle = set()
    assert manager._wait_before_taking(bare, moderate) == pytest.approx(worker_pool.COLD_START_DELAY_S)
    clock[0] += worker_pool.COLD_START_DELAY_S
    assert manager._wait_before_taking(bare, moderate) == 0
    # A model no worker has loaded (no warm worker here): the first idle one loads it, nobody waits.
    warm.models = set()
    assert manager._wait_before_taking(bare, sticker) == 0


def test_a_worker_gives_its_models_back_after_the_keep_alive_and_the_next_job_still_runs(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    manager = JobManager(store, Faults(), workers=2, files_root=tmp_path, max_input_bytes=1024, warm_workers=1,
                         keep_alive_s=1.5)
    warm, bare = manager._slots
    manager.start()
    try:
        first_pid, bare_pid = warm.process.pid, bare.process.pid

        def released(slot, pid) -> bool:
            deadline = time.time() + 20
            while time.time() < deadline:
                if slot.process is not None and slot.process.pid != pid and slot.process.is_alive() and not slot.warm:
                    return True
                time.sleep(0.05)
            return False

        # Nothing to do for 1.5 s: the warm worker's process is replaced by a bare one; the bare one stays.
        assert released(warm, first_pid)
        assert not warm.warm_up and bare.process.pid == bare_pid
        # The next job runs on a bare worker, which then holds that model until its keep-alive ends.
        job, _ = manager.submit(SELFTEST, {"seconds": 0.1}, "http://x", None)
        wait_done(store, job.request_id)
        assert store.get(job.request_id).error_type is None
        [holder] = [slot for slot in (warm, bare) if slot.warm]
        assert released(holder, holder.process.pid)
    finally:
        manager.stop()
