"""Retention: photos and model-server intermediates go N days after a generation ended; assets stay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from include import generations, retention, storage
from include.db import session_scope
from include.models import Generation, utcnow
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)
from tests.include.test_deletion import finished_buddy, model_server, world  # noqa: F401  (fixtures)


def ended(gid: str, days_ago: float) -> None:
    with session_scope() as session:
        generation = session.get(Generation, gid)
        generation.finished_at = utcnow() - timedelta(days=days_ago)
        session.add(generation)


def test_photos_and_intermediates_go_after_the_retention_period_and_assets_stay(world):
    user, _ = make_user(tokens=3)
    old, old_job = finished_buddy(user.id, model_server=world)
    recent, recent_job = finished_buddy(user.id, model_server=world)
    ended(old, days_ago=7.5)
    ended(recent, days_ago=6.5)

    assert retention.purge_due() == {"generations": 1, "model_jobs": 0}

    assert not storage.exists(generations.upload_key(old))
    assert all(storage.exists(generations.asset_key(old, kind)) for kind in generations.ASSET_FILES)
    assert world.status(old_job).status_code == 404
    assert not (world.var_dir / "model_server" / "files" / old_job["request_id"]).exists()
    assert storage.exists(generations.upload_key(recent)) and world.status(recent_job).status_code == 200
    assert generations.get(old).files_purged_at is not None and generations.get(recent).files_purged_at is None
    assert retention.purge_due() == {"generations": 0, "model_jobs": 0}  # nothing is due twice


def test_the_retention_period_is_a_setting(world, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_UPLOAD_RETENTION_DAYS", "1")
    from include.settings import get_settings

    get_settings.cache_clear()
    user, _ = make_user(tokens=1)
    gid, _ = finished_buddy(user.id)
    ended(gid, days_ago=1.5)
    assert retention.due_for_purge() == [(gid, False)]


def test_unfinished_generations_are_never_due(world):
    from include import ledger

    user, _ = make_user(tokens=1)
    running = ledger.create_paid_generation(Generation(user_id=user.id, prompt="p", upload_path="x", created_at=utcnow() - timedelta(days=30)))
    assert retention.due_for_purge() == []
    assert running.status == "queued"


def test_a_model_server_that_is_down_fails_the_pass_and_the_generation_stays_due(fresh_app_db, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_MODEL_SERVER_PORT", "9")
    from include.settings import get_settings

    get_settings.cache_clear()
    user, _ = make_user(tokens=1)
    gid, _ = finished_buddy(user.id)
    ended(gid, days_ago=8)
    with pytest.raises(retention.PurgeFailed):
        retention.purge_due()
    assert not storage.exists(generations.upload_key(gid))  # what could go, went
    assert retention.due_for_purge() == [(gid, False)]


@pytest.fixture
def fal(fresh_app_db, monkeypatch):
    """The app configured for fal.ai, with fal's Platform API answered by the fake."""
    from include.settings import get_settings
    from tests.fakes.fal_platform import FakeFalPlatform

    platform = FakeFalPlatform().start()
    monkeypatch.setenv("BITBUDDIES_MODEL_PROVIDER", "fal")
    monkeypatch.setenv("BITBUDDIES_FAL_PLATFORM_URL", platform.api_url)
    monkeypatch.setenv("BITBUDDIES_FAL_ADMIN_KEY", platform.admin_key)
    get_settings.cache_clear()
    yield platform
    platform.stop()
    get_settings.cache_clear()


def fal_buddy(user_id: int, platform, request_ids: list[str]) -> str:
    gid, _ = finished_buddy(user_id)
    for request_id in request_ids:
        platform.keep(request_id)
        retention.record_fal_job(gid, request_id)
    return gid


def test_fals_payloads_and_output_files_go_with_the_retention_period(fal):
    user, _ = make_user(tokens=2)
    old = fal_buddy(user.id, fal, ["req-old-segment", "req-old-animate"])
    recent = fal_buddy(user.id, fal, ["req-recent-segment"])
    ended(old, days_ago=7.5)
    ended(recent, days_ago=6.5)

    assert retention.purge_due() == {"generations": 1, "model_jobs": 0}
    assert sorted(fal.deleted) == ["req-old-animate", "req-old-segment"]
    assert set(fal.requests) == {"req-recent-segment"}
    assert storage.list_keys(f"provider_jobs/{old}") == [] and storage.list_keys(f"provider_jobs/{recent}") != []
    assert retention.purge_due() == {"generations": 0, "model_jobs": 0}
    assert len(fal.deleted) == 2


def test_deleting_a_buddy_deletes_fals_copies_at_once(fal):
    from include import deletion

    user, _ = make_user(tokens=1)
    gid = fal_buddy(user.id, fal, ["req-a"])
    deletion.delete_generation(user.id, gid)
    assert fal.deleted == ["req-a"] and generations.get(gid).files_purged_at is not None


def test_when_fal_fails_the_generation_stays_due_and_a_job_fal_forgot_is_not_an_error(fal):
    user, _ = make_user(tokens=1)
    gid = fal_buddy(user.id, fal, ["req-1", "req-2"])
    retention.record_fal_job(gid, "req-fal-already-forgot")
    ended(gid, days_ago=8)
    fal.fail_next = 1
    with pytest.raises(retention.PurgeFailed):
        retention.purge_due()
    assert not storage.exists(generations.upload_key(gid))  # the photo is gone all the same
    assert retention.due_for_purge() == [(gid, False)]
    assert retention.purge_due()["generations"] == 1
    assert sorted(fal.deleted) == ["req-1", "req-2"] and storage.list_keys(f"provider_jobs/{gid}") == []


def test_without_an_admin_key_nothing_is_sent_to_fal(fal, monkeypatch):
    from include.settings import get_settings

    monkeypatch.setenv("BITBUDDIES_FAL_ADMIN_KEY", "")
    get_settings.cache_clear()
    user, _ = make_user(tokens=1)
    gid = fal_buddy(user.id, fal, ["req-x"])
    ended(gid, days_ago=8)
    assert retention.purge_due()["generations"] == 1
    assert fal.deleted == [] and storage.list_keys(f"provider_jobs/{gid}") == []


def test_only_fal_request_ids_are_recorded(fal):
    with pytest.raises(ValueError):
        retention.record_fal_job("a" * 32, "../../generations/x")
