"""include/events.py: the event store (seq, keys, terminal) and the estimates."""

from __future__ import annotations

import threading

import pytest

from include import events
from include.db import session_scope
from include.generations import mark_failed, mark_succeeded
from include.models import Generation
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)


@pytest.fixture
def generation(fresh_app_db):
    events.reset_estimates()
    user, _ = make_user()
    with session_scope() as session:
        gen = Generation(user_id=user.id, prompt="wave", upload_path="uploads/x/photo.jpg")
        session.add(gen)
    return gen.id


def test_seq_counts_up_per_generation_and_keys_deduplicate(generation):
    first = events.record(generation, "stage_started", {"stage": "moderate"}, key="stage_started:moderate:1")
    second = events.record(generation, "stage_finished", {"stage": "moderate", "duration_seconds": 2.0}, key="f:moderate:1")
    again = events.record(generation, "stage_started", {"stage": "moderate"}, key="stage_started:moderate:1")
    assert (first.seq, second.seq, again.seq) == (1, 2, 1)
    assert [e.seq for e in events.history(generation)] == [1, 2]
    assert [e.seq for e in events.history(generation, after_seq=1)] == [2]


def test_concurrent_publishers_never_share_a_seq(generation):
    def publish(n):
        for i in range(10):
            events.record(generation, "queue_position", {"position": i}, key=f"q:{n}:{i}")

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in events.history(generation)] == list(range(1, 41))


def test_unknown_type_and_generation_are_refused(generation):
    with pytest.raises(ValueError):
        events.record(generation, "exploded")
    with pytest.raises(events.UnknownGeneration):
        events.record("0" * 32, "retry")


def test_one_terminal_event_per_generation(generation):
    mark_succeeded(generation, {"webm": "generations/x/buddy.webm"})
    first = events.ensure_terminal_event(generation)
    second = events.record(generation, "succeeded", {"status": "succeeded"})
    assert first.type == "succeeded" and first.seq == second.seq
    assert len(events.history(generation)) == 1


def test_no_terminal_event_while_running(generation):
    assert events.ensure_terminal_event(generation) is None


def test_failed_terminal_event_says_whether_refunded(generation):
    mark_failed(generation, "The animate step failed: boom", "animate")
    event = events.ensure_terminal_event(generation)
    assert event.type == "failed"
    assert event.data["error"] == "The animate step failed: boom" and event.data["refunded"] is False


def test_estimate_uses_stage_medians():
    medians = {"charge": 1, "moderate": 2, "analyze": 2, "cartoonize": 3, "segment_image": 2, "animate": 6,
               "segment_video": 3, "transcode": 4, "publish": 1}
    start = events.estimate(medians, finished=[], current=None, elapsed=0)
    assert start == {"percent": 0, "eta_seconds": 24.0}
    mid = events.estimate(medians, finished=["charge", "moderate", "analyze", "cartoonize", "segment_image"], current="animate", elapsed=2)
    assert mid["eta_seconds"] == 4 + 3 + 4 + 1
    assert mid["percent"] == int(100 * 12 / 24)
    # Running past the median: never negative, never 100 before the end.
    late = events.estimate(medians, finished=[s for s in medians if s != "publish"], current="publish", elapsed=50)
    assert late["eta_seconds"] == 0 and late["percent"] == 99
    assert events.estimate({}, finished=["charge"], current="moderate", elapsed=1) == {"percent": 11, "eta_seconds": None}


def test_stage_events_carry_estimates_from_recent_runs(generation, fresh_app_db):
    for stage, seconds in (("charge", 1.0), ("moderate", 3.0)):
        events.record(generation, "stage_finished", {"stage": stage, "duration_seconds": seconds}, key=f"f:{stage}")
    events.reset_estimates()
    started = events.record(generation, "stage_started", {"stage": "analyze"}, key="s:analyze")
    # Unknown stages count as the median of the known ones (2 s): 7 stages left after charge and moderate.
    assert started.data["eta_seconds"] == pytest.approx(2.0 * 7, abs=0.1)
    assert 0 < started.data["percent"] < 100


def test_stage_of_maps_task_ids():
    assert events.stage_of("charge_token") == "charge"
    assert events.stage_of("segment_video") == "segment_video"
    assert events.stage_of("photo_url") is None
