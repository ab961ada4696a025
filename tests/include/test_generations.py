"""A generation's lifecycle as the pipeline reports it: stages, success, first error wins."""

from __future__ import annotations

from datetime import timedelta

import pytest

from include import events, generations
from include.db import session_scope
from include.models import Generation, utcnow
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)

ASSETS = {kind: generations.asset_key("g", kind) for kind in generations.ASSET_FILES}


@pytest.fixture
def gid(fresh_app_db) -> str:
    user, _ = make_user()
    with session_scope() as session:
        generation = Generation(user_id=user.id, prompt="wave", upload_path="uploads/x/photo.jpg")
        session.add(generation)
    return generation.id


def test_new_generation_is_queued_with_a_short_unique_slug(gid):
    generation = generations.get(gid)
    assert generation.status == "queued" and generation.refund_state == "none"
    assert len(generation.id) == 32
    assert 6 <= len(generation.slug) <= 12 and generation.slug.replace("-", "").replace("_", "").isalnum()
    assert generation.created_at.tzinfo is not None


def test_get_unknown_raises(fresh_app_db):
    with pytest.raises(generations.GenerationNotFound):
        generations.get("f" * 32)


def test_mark_stage_moves_to_running(gid):
    generations.mark_stage(gid, "charge")
    generations.mark_stage(gid, "moderate")
    generation = generations.get(gid)
    assert (generation.status, generation.stage) == ("running", "moderate")


def test_mark_succeeded_stores_assets_and_finish_time(gid):
    generations.mark_stage(gid, "transcode")
    generations.mark_succeeded(gid, ASSETS)
    generation = generations.get(gid)
    assert generation.status == "succeeded" and generation.assets == ASSETS
    assert generation.finished_at is not None


def test_mark_succeeded_refuses_unknown_asset_kinds(gid):
    with pytest.raises(ValueError, match="unknown asset kinds"):
        generations.mark_succeeded(gid, {"mp4": "generations/x/buddy.mp4"})
    assert generations.get(gid).status == "queued"


def test_mark_failed_keeps_the_first_error(gid):
    generations.mark_failed(gid, "Your photo was rejected.", "moderate")
    generations.mark_failed(gid, "Something went wrong.", None)
    generation = generations.get(gid)
    assert (generation.status, generation.error, generation.failed_task) == ("failed", "Your photo was rejected.", "moderate")


def test_failure_never_overwrites_success_and_stages_never_revive(gid):
    generations.mark_succeeded(gid, ASSETS)
    generations.mark_failed(gid, "late failure", "refund_token")
    generations.mark_stage(gid, "animate")
    generation = generations.get(gid)
    assert (generation.status, generation.error, generation.stage) == ("succeeded", None, "publish")


def test_pending_triggers_and_mark_triggered(gid):
    assert [g.id for g in generations.OUTBOX.pending()] == [gid]
    first = generations.OUTBOX.mark_triggered(gid).triggered_at
    assert generations.OUTBOX.pending() == []
    assert generations.OUTBOX.mark_triggered(gid).triggered_at == first


def test_record_error_keeps_the_generation_running_until_mark_failed(gid):
    g = generations
    g.mark_stage(gid, "animate")
    g.record_error(gid, "The animate step failed: boom", "animate")
    g.record_error(gid, "a later, less precise error", "segment_video")
    assert g.get(gid).status == "running"
    failed = g.mark_failed(gid, "Something went wrong while making your buddy.", None)
    assert failed.status == "failed"
    assert failed.error == "The animate step failed: boom" and failed.failed_task == "animate"


def _age(gid: str, minutes: float) -> None:
    """Pretend the generation was created and last updated ``minutes`` ago."""
    with session_scope() as session:
        generation = session.get(Generation, gid)
        generation.created_at = generation.updated_at = utcnow() - timedelta(minutes=minutes)
        session.add(generation)


def test_stalled_finds_unfinished_generations_without_recent_progress(gid):
    cutoff = utcnow() - timedelta(minutes=3)
    assert generations.stalled(cutoff) == []  # just created
    _age(gid, 10)
    ((found, last),) = generations.stalled(cutoff)
    assert found.id == gid and last < cutoff
    events.record(gid, "queue_position", {"position": 2}, key="queue:2")  # a sign of progress
    assert generations.stalled(cutoff) == []


def test_a_finished_generation_is_never_stalled(gid):
    _age(gid, 10)
    generations.mark_succeeded(gid, ASSETS)
    _age(gid, 10)
    assert generations.stalled(utcnow() - timedelta(minutes=3)) == []
