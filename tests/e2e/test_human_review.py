"""Human in the loop over the real stack: borderline photos wait in Airflow's "Required actions".

Three generations of the same borderline photo run side by side: one approved the moment its
request appears (also the fastest possible resume of a parked task), one rejected, one left
unanswered until ``BITBUDDIES_REVIEW_TIMEOUT`` (its run outlasts the stack's DeadlineAlert, which
alerts the operator once). A clean photo beside them never runs the review task. Answers go through Airflow's REST API as the UI sends them, as the stack's admin.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import cv2
import httpx
import pytest
from skimage import data

from include.generations import GENERATE_DAG_ID
from include.review import REJECTED_BY_REVIEW
from ops.airflow_roles import API_USER
from ops.stack import api_airflow_password
from tests.browser import browser, playwright_driver, screenshot  # noqa: F401  (fixtures)
from tests.e2e.conftest import jpeg_bytes, wait_for_generation

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def borderline_photo() -> bytes:
    """The astronaut with two skin-coloured discs painted on her suit: nudenet's bundled detector
    scores it 0.38 (FEMALE_BREAST_EXPOSED) after JPEG, inside the default review band [0.30, 0.45)."""
    rgb = data.astronaut().copy()
    for x, y, r in ((201, 305, 38), (380, 268, 16)):
        cv2.circle(rgb, (x, y), r, (224, 172, 150), -1)
        cv2.circle(rgb, (x, y), max(3, r // 6), (150, 90, 80), -1)
    return jpeg_bytes(rgb)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(api: httpx.Client, key: str, photo: bytes) -> str:
    resp = api.post("/api/generations", headers=auth(key), files={"image": ("photo.jpg", photo, "image/jpeg")}, data={"prompt": "wave"})
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def ledger_rows(stack, gid: str) -> list[tuple[str, int]]:
    with sqlite3.connect(stack.cfg.var_dir / "app.db") as db:
        return db.execute("SELECT reason, amount FROM ledger_entry WHERE generation_id = ? ORDER BY id", (gid,)).fetchall()


def progress_events(stack, gid: str) -> list[tuple[str, str]]:
    with sqlite3.connect(stack.cfg.var_dir / "app.db") as db:
        rows = db.execute("SELECT type, json_extract(data, '$.stage') FROM generation_event WHERE generation_id = ? ORDER BY seq", (gid,))
        return [tuple(row) for row in rows.fetchall()]


def hitl_url(stack, gid: str) -> str:
    return f"{stack.cfg.airflow_url}/api/v2/dags/{GENERATE_DAG_ID}/dagRuns/{gid}/taskInstances/review/-1/hitlDetails"


def task_instance(stack, gid: str, task_id: str, headers: dict) -> dict:
    url = f"{stack.cfg.airflow_url}/api/v2/dags/{GENERATE_DAG_ID}/dagRuns/{gid}/taskInstances/{task_id}"
    return httpx.get(url, headers=headers, timeout=30).json()


def wait_for_request(stack, gid: str, headers: dict, timeout: float = 240, poll: float = 0.5) -> dict:
    """The review's HITL request once the task has written it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        resp = httpx.get(hitl_url(stack, gid), headers=headers, timeout=30)
        if resp.status_code == 200:
            return resp.json()
        time.sleep(poll)
    raise AssertionError(f"{gid}: no review request within {timeout} s")


def answer(stack, gid: str, option: str, headers: dict) -> None:
    resp = httpx.patch(hitl_url(stack, gid), headers=headers, json={"chosen_options": [option], "params_input": {}}, timeout=30)
    assert resp.status_code == 200, resp.text


def show_required_actions(stack, browser, gid: str) -> None:  # noqa: F811
    """The admin's "Required actions" in Airflow's UI lists the pending review, and its page has
    the photo's score and the Approve / Reject buttons (screenshots for the README)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_cookies([{"name": "_token", "value": stack.airflow_token(), "url": stack.cfg.airflow_url}])
    page = context.new_page()
    try:
        page.goto(f"{stack.cfg.airflow_url}/required_actions?response_received=false")
        page.get_by_text(gid).first.wait_for(timeout=30_000)
        screenshot(page, "operator-required-actions", full_page=False)
        page.goto(f"{stack.cfg.airflow_url}/dags/{GENERATE_DAG_ID}/runs/{gid}/tasks/review/required_actions")
        page.get_by_role("button", name="Approve").first.wait_for(timeout=30_000)
        page.get_by_text("inside the review band").first.wait_for(timeout=10_000)
        screenshot(page, "operator-review", full_page=False)
    finally:
        context.close()


def test_borderline_photos_wait_for_review_approved_rejected_or_timed_out(stack, api, make_user, browser, pushover):  # noqa: F811
    headers = {"Authorization": f"Bearer {stack.airflow_token()}"}
    photo = borderline_photo()
    keys = {name: make_user(tokens=1) for name in ("approved", "rejected", "timed_out", "clean")}
    gids = {name: submit(api, keys[name], photo) for name in ("approved", "rejected", "timed_out")}
    gids["clean"] = submit(api, keys["clean"], jpeg_bytes(data.astronaut()))

    # Approved the moment the request exists: the resume can race the parked try's exit.
    approved = {}
    approver = threading.Thread(
        target=lambda: approved.update(wait_for_request(stack, gids["approved"], headers, poll=0.05)) or answer(stack, gids["approved"], "Approve", headers)
    )
    approver.start()

    request = wait_for_request(stack, gids["rejected"], headers)
    assert request["options"] == ["Approve", "Reject"] and "0.3" in request["subject"] and gids["rejected"] in request["subject"]
    # While it waits, the user's progress stream says so (the page labels the stage "Waiting for review").
    assert ("stage_started", "review") in progress_events(stack, gids["rejected"])
    assert task_instance(stack, gids["rejected"], "review", headers)["state"] == "awaiting_input"
    show_required_actions(stack, browser, gids["rejected"])
    # The API's least-privileged Airflow user cannot answer.
    token = httpx.post(f"{stack.cfg.airflow_url}/auth/token", json={"username": API_USER, "password": api_airflow_password(stack.cfg)}, timeout=10)
    refused = httpx.patch(hitl_url(stack, gids["rejected"]), headers=auth(token.json()["access_token"]), json={"chosen_options": ["Approve"]}, timeout=30)
    assert refused.status_code == 403, refused.text
    answer(stack, gids["rejected"], "Reject", headers)
    wait_for_request(stack, gids["timed_out"], headers)  # and nobody answers it
    approver.join(timeout=300)
    assert approved, "the approval was not sent"

    done = {name: wait_for_generation(api, keys[name], gid, timeout=400) for name, gid in gids.items()}
    assert done["approved"]["status"] == "succeeded", done["approved"]
    assert done["clean"]["status"] == "succeeded", done["clean"]
    for name in ("rejected", "timed_out"):
        gen = done[name]
        assert (gen["status"], gen["error"], gen["refund_state"]) == ("failed", REJECTED_BY_REVIEW, "refunded"), gen
        rows = ledger_rows(stack, gids[name])
        assert sorted(r for r, _ in rows) == ["charge", "refund"] and sum(a for _, a in rows) == 0, rows
        assert api.get("/api/me", headers=auth(keys[name])).json()["balance"] == 1
    # Rejected by a person; failed by the timeout with nobody's answer.
    rejected, timed_out = (httpx.get(hitl_url(stack, gids[n]), headers=headers).json() for n in ("rejected", "timed_out"))
    assert rejected["chosen_options"] == ["Reject"] and rejected["responded_by_user"]["name"] == "admin", rejected
    assert not timed_out["response_received"] and timed_out["chosen_options"] is None, timed_out

    # The approved review finished in its first try (a stale exit event would have failed it);
    # the clean photo's review never ran.
    review = task_instance(stack, gids["approved"], "review", headers)
    assert (review["state"], review["try_number"]) == ("success", 1), review
    clean = task_instance(stack, gids["clean"], "review", headers)
    assert clean["state"] == "skipped" and clean["try_number"] == 0, clean
    assert not any(stage == "review" for _, stage in progress_events(stack, gids["clean"]))
    for name, state in (("rejected", "failed"), ("timed_out", "failed")):
        assert task_instance(stack, gids[name], "review", headers)["state"] == state

    # The unanswered review held its run past the stack's deadline (DEADLINE_ALERT_SECONDS after it
    # was queued): Airflow's DeadlineAlert raised one generation_overdue alert, sent to Pushover once.
    overdue = gids["timed_out"]
    deadline = time.time() + 120
    while not (sent := [m for m in pushover.messages if overdue in m["message"] and "missed its deadline" in m.get("title", "")]):
        assert time.time() < deadline, "the overdue run's deadline alert did not reach Pushover"
        time.sleep(2)
    time.sleep(5)
    assert len([m for m in pushover.messages if overdue in m["message"] and "missed its deadline" in m.get("title", "")]) == 1
    assert sent[0]["url"].startswith(f"{stack.cfg.airflow_url}/dags/{GENERATE_DAG_ID}/runs/{overdue}")
    with sqlite3.connect(stack.cfg.var_dir / "app.db") as db:
        rows = db.execute("SELECT key FROM alert WHERE generation_id = ? AND kind = 'generation_overdue'", (overdue,)).fetchall()
    assert rows == [(f"generation_overdue:{overdue}",)]
