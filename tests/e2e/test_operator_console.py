"""The operator's Airflow over the real stack: a buddy started from the trigger form.

Runs are started through Airflow's REST API with the form's params, as the UI sends them (every
param, the API's ones null), one paid by the user and one refused (unknown email), and from the
form itself in Chromium (Trigger enabled, a photo URL, an operator grant); they run side by side.
The ledger shows each user charged once, by the payer the form named, or not at all.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from skimage import data

from include.generations import GENERATE_DAG_ID
from include.operator_generations import generation_id_for_run
from tests.browser import DESKTOP, browser, playwright_driver, screenshot  # noqa: F401  (fixtures)
from tests.e2e.conftest import jpeg_bytes, wait_for_generation

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def form_conf(photo: str, email: str, **overrides) -> dict:
    """What the trigger form sends: every param, the API's own ones null."""
    return {
        "photo": photo, "prompt": "a cheerful astronaut", "motion": "wave", "email": email, "payment": "user_tokens",
        "generation_id": None, "user_id": None, "upload_path": None,
    } | overrides


def ledger_rows(stack, gid: str) -> list[tuple[str, int]]:
    with sqlite3.connect(stack.cfg.var_dir / "app.db") as db:
        return db.execute("SELECT reason, amount FROM ledger_entry WHERE generation_id = ? ORDER BY id", (gid,)).fetchall()


def wait_stored(api: httpx.Client, key: str, gid: str, timeout: float = 120) -> None:
    """Until the run's first task has stored the generation (the user's API then knows it)."""
    deadline = time.time() + timeout
    while api.get(f"/api/generations/{gid}", headers=auth(key)).status_code == 404:
        assert time.time() < deadline, f"generation {gid} was not stored within {timeout} s"
        time.sleep(1)


def run_state(stack, run_id: str, headers: dict, timeout: float = 300) -> str:
    deadline = time.time() + timeout
    while True:
        run = httpx.get(f"{stack.cfg.airflow_url}/api/v2/dags/{GENERATE_DAG_ID}/dagRuns/{run_id}", headers=headers).json()
        if run["state"] in ("success", "failed") or time.time() > deadline:
            return run["state"]
        time.sleep(1)


@pytest.fixture(scope="module")
def photo_url(tmp_path_factory):
    """A photo on a real HTTP server, as an operator would paste its URL."""
    served = tmp_path_factory.mktemp("served")
    (served / "astronaut.jpg").write_bytes(jpeg_bytes(data.astronaut()))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/astronaut.jpg"
    server.shutdown()
    server.server_close()


def trigger_in_the_browser(stack, browser, photo: str, email: str) -> str:  # noqa: F811
    """Fill the trigger form as an operator does (operator grant), click Trigger; the run's id."""
    from urllib.parse import unquote

    context = browser.new_context(viewport={"width": DESKTOP["width"], "height": 1300})
    context.add_cookies([{"name": "_token", "value": stack.airflow_token(), "url": stack.cfg.airflow_url}])
    page = context.new_page()
    try:
        page.goto(f"{stack.cfg.airflow_url}/dags/{GENERATE_DAG_ID}")
        page.get_by_role("button", name="Trigger").first.click()
        form = page.locator("[role=dialog][data-state=open]")
        trigger = form.get_by_role("button", name="Trigger")
        form.locator("#element_photo").wait_for()
        # The defaults make a valid form (an invalid one keeps Trigger disabled).
        assert trigger.is_enabled()
        form.locator("#element_photo").fill(photo)
        form.locator("#element_prompt").fill("a cheerful astronaut")
        form.locator("#element_motion").click()
        page.get_by_role("option", name="wave", exact=True).click()
        form.locator("#element_email").fill(email)
        form.locator("#element_payment").click()
        page.get_by_role("option", name="an operator grant (recorded in the ledger)").click()
        screenshot(page, "operator-trigger-form", full_page=False)
        assert trigger.is_enabled()
        trigger.click()
        page.wait_for_url("**/runs/manual__*", timeout=30_000)
        return unquote(page.url.rsplit("/runs/", 1)[1].split("?")[0])
    finally:
        context.close()


def test_operators_start_buddies_with_the_trigger_form(stack, api, make_user, browser, photo_url, tmp_path):  # noqa: F811
    headers = {"Authorization": f"Bearer {stack.airflow_token()}"}
    payer, granted = make_user(tokens=1), make_user(tokens=0)
    emails = {key: api.get("/api/me", headers=auth(key)).json()["email"] for key in (payer, granted)}
    photo_file = tmp_path / "astronaut.jpg"
    photo_file.write_bytes(jpeg_bytes(data.astronaut()))

    # Through the REST API with the form's params, as the UI sends them: a file on the server paid
    # with the user's token, and an unknown email.
    runs = {"paid": f"manual__operator_paid_{time.time_ns()}", "refused": f"manual__operator_refused_{time.time_ns()}"}
    confs = {"paid": form_conf(str(photo_file), emails[payer]), "refused": form_conf(photo_url, "nobody@example.com")}
    for name, run_id in runs.items():
        resp = httpx.post(
            f"{stack.cfg.airflow_url}/api/v2/dags/{GENERATE_DAG_ID}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": None, "conf": confs[name]},
            headers=headers,
        )
        assert resp.status_code == 200, resp.text
    # A value the form's schema refuses never starts a run.
    bad = httpx.post(
        f"{stack.cfg.airflow_url}/api/v2/dags/{GENERATE_DAG_ID}/dagRuns",
        json={"logical_date": None, "conf": form_conf("photo.jpg", emails[payer])},
        headers=headers,
    )
    assert bad.status_code == 400 and "photo" in bad.text
    # In the browser: a photo URL, paid by an operator grant (the user has no token).
    runs["granted"] = trigger_in_the_browser(stack, browser, photo_url, emails[granted])

    gid = generation_id_for_run(GENERATE_DAG_ID, runs["paid"])
    wait_stored(api, payer, gid)
    generation = wait_for_generation(api, payer, gid)  # the user sees it as their own
    assert generation["status"] == "succeeded", generation
    assert generation["prompt"] == "a cheerful astronaut"
    with sqlite3.connect(stack.cfg.var_dir / "app.db") as db:
        assert db.execute("SELECT motion, triggered_at IS NOT NULL FROM generation WHERE id = ?", (gid,)).fetchone() == ("wave", 1)
    assert api.get(generation["assets"]["webm"]).status_code == 200
    assert ledger_rows(stack, gid) == [("charge", -1)]
    assert api.get("/api/me", headers=auth(payer)).json()["balance"] == 0
    assert run_state(stack, runs["paid"], headers) == "success"
    # The run's BitBuddies tab (/g/{RUN_ID}) shows this generation and links back to the run.
    tab = api.get(f"/g/{runs['paid']}", params={"dag_id": GENERATE_DAG_ID})
    assert tab.status_code == 200 and f"Generation {gid}" in tab.text and "succeeded" in tab.text
    assert f"/dags/{GENERATE_DAG_ID}/runs/{runs['paid']}'" in tab.text

    granted_gid = generation_id_for_run(GENERATE_DAG_ID, runs["granted"])
    wait_stored(api, granted, granted_gid)
    assert wait_for_generation(api, granted, granted_gid)["status"] == "succeeded"
    # The ledger says who paid: an operator grant, spent by the generation's one charge.
    assert ledger_rows(stack, granted_gid) == [("grant", 1), ("charge", -1)]
    assert api.get("/api/me", headers=auth(granted)).json()["balance"] == 0

    # Unknown email: the run fails at its first task, nothing stored, nobody charged.
    assert run_state(stack, runs["refused"], headers) == "failed"
    assert ledger_rows(stack, generation_id_for_run(GENERATE_DAG_ID, runs["refused"])) == []
    tis = httpx.get(
        f"{stack.cfg.airflow_url}/api/v2/dags/{GENERATE_DAG_ID}/dagRuns/{runs['refused']}/taskInstances", headers=headers
    ).json()["task_instances"]
    states = {ti["task_id"]: ti["state"] for ti in tis}
    # Refused where the generation is stored, in the run's first task (charge_token): at once, no retry.
    assert states["charge_token"] == "failed" and states["moderate"] == "upstream_failed"
    assert next(ti for ti in tis if ti["task_id"] == "charge_token")["try_number"] == 1
    assert states["refund_token"] == "success"  # nothing stored, nothing to refund


def test_the_alerts_and_the_audit_are_pages_of_the_airflow_ui(stack, browser, pushover):  # noqa: F811
    # A form run refused at its first task (unknown email) fails; the DAG's notifier raises the
    # run's alert, delivered to Pushover once.
    headers = {"Authorization": f"Bearer {stack.airflow_token()}"}
    run_id = f"manual__refused_{time.time_ns()}"
    resp = httpx.post(
        f"{stack.cfg.airflow_url}/api/v2/dags/{GENERATE_DAG_ID}/dagRuns",
        json={"dag_run_id": run_id, "logical_date": None, "conf": form_conf("/nonexistent.jpg", "nobody@example.com")},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    deadline = time.time() + 240
    def failure_alerts() -> int:  # (not the e2e stack's 45 s DeadlineAlert, should the run be slow)
        return sum(run_id in m.get("message", "") and "missed its deadline" not in m.get("title", "") for m in pushover.messages)

    while not failure_alerts():
        assert time.time() < deadline, "the failed run's alert did not reach Pushover"
        time.sleep(2)
    time.sleep(3)
    assert failure_alerts() == 1

    base = stack.cfg.airflow_url
    assert httpx.get(f"{base}/bitbuddies/alerts").status_code == 401  # no Airflow session
    context = browser.new_context(viewport=DESKTOP)
    context.add_cookies([{"name": "_token", "value": stack.airflow_token(), "url": base}])
    page = context.new_page()
    try:
        # As the UI's navigation shows them: the plugin's pages in an iframe of the UI.
        page.goto(f"{base}/plugin/bitbuddies-alerts")
        frame = page.frame_locator("iframe")
        frame.get_by_text(run_id).first.wait_for(timeout=30_000)
        screenshot(page, "operator-alerts", full_page=False)
        page.goto(f"{base}/plugin/bitbuddies-ledger-audit")
        verdict = page.frame_locator("iframe").locator("#verdict")
        verdict.wait_for(timeout=30_000)
        assert "No violations" in verdict.inner_text()
        screenshot(page, "operator-ledger-audit", full_page=False)
    finally:
        context.close()
