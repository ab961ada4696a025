"""The ``bitbuddies`` command: user creation prints a working key; generate follows progress."""

from __future__ import annotations

import io
import threading
import time

from fastapi.testclient import TestClient

from api import cli
from api.main import app
from include import generations, ledger
from tests.api import images
from tests.api.support import auth


def create_user(capsys, email="cli@example.com", tokens=3) -> str:
    assert cli.main(["user", "create", email, "--tokens", str(tokens)]) == 0
    return capsys.readouterr().out.strip()


def test_db_init_then_user_create_prints_a_working_key(client, fresh_app_db, capsys):
    assert cli.main(["db", "init"]) == 0
    assert "Tables ready" in capsys.readouterr().out
    key = create_user(capsys)
    assert key.startswith("bb_") and "\n" not in key
    me = client.get("/api/me", headers=auth(key)).json()
    assert me["email"] == "cli@example.com" and me["balance"] == 3


def test_duplicate_email_is_refused(fresh_app_db, capsys):
    create_user(capsys)
    assert cli.main(["user", "create", "cli@example.com", "--tokens", "1"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_user_list_shows_balances(fresh_app_db, capsys):
    create_user(capsys, "a@example.com", 2)
    create_user(capsys, "b@example.com", 0)
    assert cli.main(["user", "list"]) == 0
    out = capsys.readouterr().out
    assert "a@example.com" in out and "b@example.com" in out
    assert [line.split()[2] for line in out.splitlines()[1:]] == ["2", "0"]


def test_progress_line_counts_stages():
    assert cli.progress_line({"status": "running", "stage": "animate"}, 12).startswith("[stage 7/10 animate]")
    assert cli.progress_line({"status": "running", "stage": "charge_token"}, 1).startswith("[stage 1/10 charge_token]")
    assert cli.progress_line({"status": "queued", "stage": None}, 0).startswith("[queued]")


def run_pipeline_in_background(outcome: str, shown: io.StringIO) -> threading.Thread:
    """Plays the DAG's part: reports stages on the first pending generation, then finishes.

    Each stage is held until the CLI has displayed it (read from its output), so the test
    does not depend on timing.
    """

    def pipeline():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pending = generations.pending_triggers() or [g for g in _all() if g.status == "queued"]
            if pending:
                break
            time.sleep(0.02)
        gid = pending[0].id
        for number, stage in enumerate(("charge", "moderate", "analyze"), start=1):
            generations.mark_stage(gid, stage)
            wait_until = time.monotonic() + 5
            while f"stage {number}/10 {stage}" not in shown.getvalue() and time.monotonic() < wait_until:
                time.sleep(0.01)
        if outcome == "succeeded":
            generations.mark_succeeded(gid, {k: generations.asset_key(gid, k) for k in generations.ASSET_FILES})
        else:
            ledger.charge_generation(gid)
            ledger.refund_generation(gid)
            generations.mark_failed(gid, "Your photo was rejected by the content filter.", "moderate")

    thread = threading.Thread(target=pipeline, daemon=True)
    thread.start()
    return thread


def _all():
    from sqlmodel import select

    from include.db import session_scope
    from include.models import Generation

    with session_scope() as session:
        return list(session.exec(select(Generation)).all())


def test_generate_follows_progress_and_prints_urls(client, fresh_app_db, capsys, tmp_path):
    key = create_user(capsys)
    photo = tmp_path / "me.jpg"
    photo.write_bytes(images.jpeg())
    out = io.StringIO()
    pipeline = run_pipeline_in_background("succeeded", out)
    code = cli.generate(photo, "a pirate", key, TestClient(app), out=out, poll_seconds=0.02, timeout_seconds=10)
    pipeline.join(5)
    text = out.getvalue()
    assert code == 0, text
    assert "stage 3/10 analyze" in text and "buddy is ready" in text
    assert "/buddy.webm" in text and "share   http" in text and "/b/" in text


def test_generate_reports_failure_and_refund(client, fresh_app_db, capsys, tmp_path):
    key = create_user(capsys)
    photo = tmp_path / "me.jpg"
    photo.write_bytes(images.jpeg())
    out = io.StringIO()
    pipeline = run_pipeline_in_background("failed", out)
    code = cli.generate(photo, "a pirate", key, TestClient(app), out=out, poll_seconds=0.02, timeout_seconds=10)
    pipeline.join(5)
    text = out.getvalue()
    assert code == 1
    assert "Failed: Your photo was rejected by the content filter." in text and "token was refunded" in text


def test_generate_shows_the_api_refusal(client, fresh_app_db, capsys, tmp_path):
    key = create_user(capsys, tokens=0)
    photo = tmp_path / "me.jpg"
    photo.write_bytes(images.jpeg())
    out = io.StringIO()
    assert cli.generate(photo, "a pirate", key, TestClient(app), out=out) == 1
    assert "Refused (402): No tokens left" in out.getvalue()
