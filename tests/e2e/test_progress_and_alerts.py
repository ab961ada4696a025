"""Live progress and operator alerts over the real stack.

`bitbuddies generate` follows a real generation through its event stream; the stream replayed after
completion holds the stage events in pipeline order and ends with the terminal event, and a client
reconnecting with Last-Event-ID gets exactly the rest. The generation page links to its Airflow run,
whose tab (the plugin's external view) shows the page. A generation whose animate jobs always fail
raises exactly one alert, delivered to Pushover through the Airflow connection.
"""

from __future__ import annotations

import io
import re
import sqlite3
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data

from api import cli
from api import sse
from include.stages import STAGE_NAMES
from tests.e2e.conftest import jpeg_bytes, wait_for_generation

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def small_astronaut() -> bytes:
    return jpeg_bytes(np.asarray(Image.fromarray(data.astronaut()).resize((384, 384))))


def read_events(stack, key: str, gid: str, last_event_id: int | None = None) -> list[sse.ReceivedEvent]:
    headers = auth(key) | ({"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {})
    url = f"{stack.cfg.api_url}/api/generations/{gid}/events"
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=60)) as response:
        assert response.status_code == 200
        return list(sse.parse_sse(response.iter_lines()))


def as_tuples(received: list[sse.ReceivedEvent]) -> list[tuple]:
    return [(e.id, e.event, e.data) for e in received]


def test_cli_follows_a_generation_live_and_its_stream_replays_in_order(stack, make_user, tmp_path):
    key = make_user(tokens=1)
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(small_astronaut())
    out = io.StringIO()
    with httpx.Client(base_url=stack.cfg.api_url, timeout=30) as http:
        code = cli.generate(photo, "wave hello", key, http, out=out, timeout_seconds=400)
    text = out.getvalue()
    assert code == 0, text[-3000:]
    gid = re.search(r"Generation (\w+) submitted", text).group(1)
    assert "animate" in text and "100%  succeeded" in text and "buddy is ready" in text

    # A client connecting after completion gets the whole history, in order, ending at the terminal event.
    replay = read_events(stack, key, gid)
    assert [int(e.id) for e in replay] == list(range(1, len(replay) + 1))
    assert replay[-1].event == "succeeded" and [e.event for e in replay].count("succeeded") == 1
    started = list(dict.fromkeys(e.json()["stage"] for e in replay if e.event == "stage_started"))
    # In pipeline order; moderate and analyze run side by side, so either may start first.
    rank = {name: i for i, name in enumerate(STAGE_NAMES)} | {"analyze": STAGE_NAMES.index("moderate")}
    assert started == sorted(started, key=rank.__getitem__), started
    assert {"charge", "moderate", "cartoonize", "animate", "transcode", "publish"} <= set(started)
    finished = [e.json() for e in replay if e.event == "stage_finished"]
    assert finished and all(f["duration_seconds"] > 0 for f in finished)
    # The CLI saw each event once (one redraw per event) on its live connection.
    assert text.count("\r") == len(replay), text[-3000:]

    # Reconnecting with Last-Event-ID gets exactly what comes after it.
    middle = len(replay) // 2
    assert as_tuples(read_events(stack, key, gid, last_event_id=middle)) == as_tuples(replay[middle:])

    # The generation page links to the run; the Airflow plugin's run tab shows the page.
    page = httpx.get(f"{stack.cfg.api_url}/g/{gid}?dag_id=bitbuddies_generate", timeout=30)
    assert page.status_code == 200 and "succeeded" in page.text
    assert f"{stack.cfg.airflow_url}/dags/bitbuddies_generate/runs/{gid}" in page.text
    plugins = httpx.get(
        f"{stack.cfg.airflow_url}/api/v2/plugins", headers={"Authorization": f"Bearer {stack.airflow_token()}"}, timeout=60
    ).json()["plugins"]
    views = [view for plugin in plugins if plugin["name"] == "bitbuddies" for view in plugin["external_views"]]
    [view] = [view for view in views if view["destination"] == "dag_run"]  # beside the operator's pages ("nav")
    assert view["href"] == f"{stack.cfg.api_url}/g/{{RUN_ID}}?dag_id={{DAG_ID}}"


def test_a_failed_generation_raises_exactly_one_alert(stack, api, make_user, pushover):
    key = make_user(tokens=1)
    faults = f"{stack.cfg.model_server_url}/_admin/faults"
    httpx.post(faults, json={"fail_rate": {"bitbuddies/animate": 1.0}}).raise_for_status()
    try:
        response = api.post(
            "/api/generations", headers=auth(key), files={"image": ("a.jpg", small_astronaut(), "image/jpeg")}, data={"prompt": "jump"}
        )
        assert response.status_code == 202, response.text
        gid = response.json()["id"]
        done = wait_for_generation(api, key, gid, timeout=400)
    finally:
        httpx.post(faults, json={}).raise_for_status()
    assert done["status"] == "failed" and done["refund_state"] == "refunded"

    # Every reporter has had its turn: the refund task's callback, then the DAG's failure callback.
    headers = {"Authorization": f"Bearer {stack.airflow_token()}"}
    run_url = f"{stack.cfg.airflow_url}/api/v2/dags/bitbuddies_generate/dagRuns/{gid}"
    deadline = time.time() + 120
    while httpx.get(run_url, headers=headers, timeout=30).json()["state"] != "failed":
        assert time.time() < deadline, "the run did not end failed"
        time.sleep(1)
    time.sleep(10)  # the DAG-level failure callback runs in the dag-processor shortly after

    with sqlite3.connect(stack.cfg.var_dir / "app.db") as db:
        # (A generation slower than the e2e stack's 45 s DeadlineAlert also has its generation_overdue.)
        rows = db.execute("SELECT key, channel, delivery_error FROM alert WHERE generation_id = ? AND kind != 'generation_overdue'", (gid,)).fetchall()
    assert rows == [(f"generation_failed:{gid}", "pushover", None)]
    [sent] = [m for m in pushover.messages if gid in m["message"] and "missed its deadline" not in m.get("title", "")]
    assert sent["token"] == pushover.token and sent["user"] == pushover.user
    assert "animate" in sent["message"] and "token refunded" in sent["message"]
    assert sent["url"].startswith(stack.cfg.airflow_url)

    replay = read_events(stack, key, gid)
    assert replay[-1].event == "failed" and replay[-1].json()["refunded"] is True
    assert any(e.event == "retry" and e.json()["stage"] == "animate" for e in replay)
