"""Deleting a buddy or a user: files gone (the model server's copies too), tombstones the ledger
audit still adds up over, refusals while work or money is in flight."""

from __future__ import annotations

import pytest
from sqlmodel import select

from include import deletion, generations, ledger, orders, retention, storage
from include.audit import audit
from include.db import session_scope
from include.models import Generation, GenerationEvent, LedgerEntry, StickerOrder, User
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)
from tests.model_server.conftest import ModelServerProcess

ADDRESS = {"name": "Ada", "address1": "1 Main St", "city": "Springfield", "zip": "12345", "country_code": "US"}


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    srv = ModelServerProcess(tmp_path_factory.mktemp("model-server")).start()
    yield srv
    srv.close()


@pytest.fixture
def world(fresh_app_db, model_server, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_MODEL_SERVER_PORT", str(model_server.port))
    from include.settings import get_settings

    get_settings.cache_clear()
    return model_server


def finished_buddy(user_id: int, *, model_server: ModelServerProcess | None = None) -> str:
    """A succeeded generation with a photo, assets, progress events and (optionally) a model-server job."""
    generation = ledger.create_paid_generation(Generation(user_id=user_id, prompt="a secret prompt", upload_path="x"))
    gid = generation.id
    with storage.open_write(generations.upload_key(gid)) as out:
        out.write(b"photo")
    assets = {}
    for kind in generations.ASSET_FILES:
        assets[kind] = generations.asset_key(gid, kind)
        with storage.open_write(assets[kind]) as out:
            out.write(b"asset")
    generations.mark_succeeded(gid, assets)
    with session_scope() as session:
        session.add(GenerationEvent(generation_id=gid, seq=1, type="stage", key="k", data={"stage": "charge"}))
    if model_server is not None:
        job = model_server.submit(
            "bitbuddies/selftest", {"seconds": 0}, headers={"Idempotency-Key": f"{retention.model_job_key_prefix(gid)}cartoonize:-1:1"}
        )
        model_server.wait_for(job)
        files = model_server.var_dir / "model_server" / "files" / job["request_id"]
        files.mkdir(parents=True)
        (files / "cartoon.png").write_bytes(b"a cartoon of the photo")
        return gid, job
    return gid, None


def test_deleting_a_buddy_removes_photo_assets_events_and_model_copies_and_keeps_the_ledger(world):
    user, _ = make_user(tokens=3)
    gid, job = finished_buddy(user.id, model_server=world)
    other, other_job = finished_buddy(user.id, model_server=world)

    deletion.delete_generation(user.id, gid)

    assert not storage.exists(generations.upload_key(gid))
    assert not any(storage.exists(generations.asset_key(gid, kind)) for kind in generations.ASSET_FILES)
    assert world.status(job).status_code == 404  # the model server forgot the job
    assert not (world.var_dir / "model_server" / "files" / job["request_id"]).exists()
    assert world.status(other_job).status_code == 200 and storage.exists(generations.upload_key(other))
    with session_scope() as session:
        tomb = session.get(Generation, gid)
        assert tomb.deleted_at and tomb.files_purged_at and tomb.prompt == "" and tomb.assets == {}
        assert not session.exec(select(GenerationEvent).where(GenerationEvent.generation_id == gid)).all()
        assert len(session.exec(select(LedgerEntry).where(LedgerEntry.generation_id == gid)).all()) == 1
    report = audit()
    assert report.ok, report.violations
    assert ledger.balance(user.id) == 1  # the deleted buddy was paid for; nothing comes back

    with pytest.raises(deletion.NotFound):
        deletion.delete_generation(user.id, gid)  # already deleted


def test_only_the_owner_can_delete(world):
    ada, _ = make_user("ada@example.com", tokens=1)
    bob, _ = make_user("bob@example.com")
    gid, _ = finished_buddy(ada.id)
    with pytest.raises(deletion.NotFound):
        deletion.delete_generation(bob.id, gid)
    assert storage.exists(generations.upload_key(gid))


def test_a_buddy_being_made_or_on_an_order_in_flight_is_refused(world):
    user, _ = make_user(tokens=3)
    running = ledger.create_paid_generation(Generation(user_id=user.id, prompt="p", upload_path="x"))
    with pytest.raises(deletion.DeletionRefused, match="still being made"):
        deletion.delete_generation(user.id, running.id)

    gid, _ = finished_buddy(user.id)
    order = orders.create_order(user.id, [gid], "A4", 1, ADDRESS)
    orders.mark_paid(order.id, "dev_autopay", None)
    with pytest.raises(deletion.DeletionRefused, match="shipped or been refunded"):
        deletion.delete_generation(user.id, gid)
    with pytest.raises(deletion.DeletionRefused):
        deletion.delete_user(user.id)
    assert storage.exists(generations.upload_key(gid))


def test_a_buddy_on_a_shipped_order_can_go_and_takes_the_sheets_with_it(world):
    user, _ = make_user(tokens=1)
    gid, _ = finished_buddy(user.id)
    order = orders.create_order(user.id, [gid], "A4", 1, ADDRESS)
    with storage.open_write(orders.sheet_key(order.id)) as out:
        out.write(b"%PDF")
    with session_scope() as session:
        row = session.get(StickerOrder, order.id)
        row.status, row.sheet_key = "shipped", orders.sheet_key(order.id)
        session.add(row)
    deletion.delete_generation(user.id, gid)
    assert not storage.exists(orders.sheet_key(order.id))
    assert orders.get(order.id).sheet_key is None


def test_deleting_a_user_anonymises_them_and_the_audit_still_adds_up(world):
    ada, _ = make_user("ada@example.com", tokens=4)
    bob, _ = make_user("bob@example.com", tokens=2)
    kept, _ = finished_buddy(bob.id)
    ids = [finished_buddy(ada.id)[0] for _ in range(2)]
    failed = ledger.create_paid_generation(Generation(user_id=ada.id, prompt="p", upload_path="x")).id
    ledger.refund_generation(failed)
    generations.mark_failed(failed, "boom")
    order = orders.create_order(ada.id, ids[:1], "A4", 1, ADDRESS)
    with session_scope() as session:
        row = session.get(StickerOrder, order.id)
        row.status = "shipped"
        session.add(row)

    deletion.delete_user(ada.id)

    with session_scope() as session:
        user = session.get(User, ada.id)
        assert user.deleted_at and "ada" not in user.email
        assert all(session.get(Generation, g).deleted_at for g in [*ids, failed])
        assert session.get(StickerOrder, order.id).shipping_address == {}
        assert len(session.exec(select(LedgerEntry).where(LedgerEntry.user_id == ada.id)).all()) == 5  # grant, 3 charges, 1 refund
    assert not any(storage.exists(generations.upload_key(g)) for g in ids)
    assert storage.exists(generations.upload_key(kept))
    report = audit()
    assert report.ok, report.violations
    with pytest.raises(deletion.NotFound):
        deletion.delete_user(ada.id)


def test_a_model_server_that_is_down_leaves_the_generation_due_for_the_retention_dag(fresh_app_db, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_MODEL_SERVER_PORT", "9")  # nothing listens there
    from include.settings import get_settings

    get_settings.cache_clear()
    user, _ = make_user(tokens=1)
    gid, _ = finished_buddy(user.id)
    deletion.delete_generation(user.id, gid)
    assert not storage.exists(generations.asset_key(gid, "webm"))  # storage went anyway
    assert generations.get(gid).files_purged_at is None
    assert retention.due_for_purge() == [(gid, True)]
