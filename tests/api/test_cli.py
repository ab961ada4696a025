"""The ``bitbuddies`` command: user creation prints a working key; generate shows live progress from a real server."""

from __future__ import annotations

import io
import re
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from api import cli
from api.main import app
from api import sse
from include import event_publisher, events, generations, ledger
from include.settings import get_settings
from tests.api import images
from tests.api.support import auth, make_user
from tests.e2e.conftest import free_port


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


def test_alerts_list_shows_the_operator_alerts(fresh_app_db, capsys):
    from include import alerts
    from include.db import session_scope
    from include.models import Generation

    user, _ = make_user("alerted@example.com")
    with session_scope() as session:
        generation = Generation(user_id=user.id, prompt="wave", upload_path="uploads/x/photo.jpg")
        session.add(generation)
    alerts.generation_failed(generation.id, "animate", "boom", True, "http://airflow/dags/d/runs/r/tasks/animate")
    assert cli.main(["alerts", "list"]) == 0
    out = capsys.readouterr().out
    assert f"generation_failed:{generation.id}  [log]" in out and "Error: boom" in out and "http://airflow/dags/d" in out


def test_progress_line_counts_stages():
    assert cli.progress_line({"status": "running", "stage": "animate"}, 12).startswith("[stage 8/11 animate]")
    assert cli.progress_line({"status": "running", "stage": "charge_token"}, 1).startswith("[stage 1/11 charge_token]")
    assert cli.progress_line({"status": "queued", "stage": None}, 0).startswith("[queued]")


def test_progress_bar_shows_stage_percent_queue_and_eta():
    out = io.StringIO()
    bar = cli.ProgressBar(out, width=10)
    event = sse.ReceivedEvent("4", "queue_position", '{"stage": "animate", "position": 3, "percent": 40, "eta_seconds": 95}')
    bar.update(event)
    assert bar.line().startswith("[####------]  40%  animate  queue position 3  ETA 1:3")
    bar.update(sse.ReceivedEvent("5", "stage_started", '{"stage": "segment_video", "percent": 70, "eta_seconds": null}'))
    assert "queue" not in bar.line() and "ETA" not in bar.line() and "segment_video" in bar.line()
    bar.update(sse.ReceivedEvent("6", "retry", '{"stage": "segment_video", "error": "The segment video step failed: boom"}'))
    assert " 70%" in bar.line() and "retrying after: The segment video step failed: boom" in bar.line()
    assert out.getvalue().count("\r") == 3


# --- generate against a real API server (uvicorn in a thread: the stream really streams) ------


class LiveAPI:
    """``api.main:app`` served by uvicorn on a free port, behind a wrapper that records each event
    stream request and can cut the first stream after ``cut_after`` events or hide the stream."""

    def __init__(self, cut_after: int | None = None, no_stream: bool = False) -> None:
        self.cut_after = cut_after
        self.no_stream = no_stream
        self.stream_requests: list[dict[str, str]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.asgi, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning", interface="asgi3")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def asgi(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].endswith("/events") or scope["method"] != "GET":
            return await app(scope, receive, send)
        self.stream_requests.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        if self.no_stream:  # an API from before the event stream existed
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]})
            return await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})
        if self.cut_after is None or len(self.stream_requests) > 1:
            return await app(scope, receive, send)
        sent = 0

        async def cut_send(message):
            nonlocal sent
            if message["type"] == "http.response.body" and b"id: " in message.get("body", b""):
                sent += 1
                if sent > self.cut_after:
                    raise StreamCut
            await send(message)

        try:
            await app(scope, receive, cut_send)
        except* StreamCut:
            pass  # returning mid-body: uvicorn drops the connection, as a dying proxy would

    def __enter__(self) -> LiveAPI:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class StreamCut(Exception):
    pass


@pytest.fixture
def live_api(client, monkeypatch):
    """Factory of LiveAPI servers; the pipeline's publisher posts to the one started last."""
    started = []

    def start(**options) -> LiveAPI:
        server = LiveAPI(**options).__enter__()
        started.append(server)
        monkeypatch.setenv("BITBUDDIES_EVENTS_PUBLISH_URL", server.url)
        get_settings.cache_clear()
        return server

    yield start
    for server in started:
        server.__exit__()
    app.state.events_bus = None
    get_settings.cache_clear()


def pending_generation() -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gens = _all()
        if gens:
            return gens[0].id
        time.sleep(0.02)
    raise AssertionError("the CLI did not submit")


def play_pipeline(outcome: str, after_connect: LiveAPI | None = None) -> threading.Thread:
    """Plays the DAG's part through the real publisher: stage events (with a queue position on
    animate), then the outcome and its terminal event, as plugins/bitbuddies_airflow/reporting.py does."""

    def pipeline():
        gid = pending_generation()
        deadline = time.monotonic() + 10
        while after_connect is not None and not after_connect.stream_requests and time.monotonic() < deadline:
            time.sleep(0.02)  # publish live, to a connected stream
        for stage in ("charge", "moderate", "analyze", "animate"):
            assert event_publisher.publish(gid, "stage_started", {"stage": stage, "try_number": 1}, key=f"stage_started:{stage}:1")
            if stage == "animate":
                for position in (2, 1, None):
                    assert event_publisher.publish(gid, "queue_position", {"stage": stage, "position": position}, key=f"queue:{position}")
            data = {"stage": stage, "try_number": 1, "duration_seconds": 2.0}
            assert event_publisher.publish(gid, "stage_finished", data, key=f"stage_finished:{stage}:1")
            time.sleep(0.05)
        if outcome == "succeeded":
            generation = generations.mark_succeeded(gid, {k: generations.asset_key(gid, k) for k in generations.ASSET_FILES})
        else:
            ledger.charge_generation(gid)
            ledger.refund_generation(gid)
            generation = generations.mark_failed(gid, "Your photo was rejected by the content filter.", "moderate")
            assert event_publisher.publish(gid, "refund", {"refunded": True}, key="refund")
        assert event_publisher.publish(gid, generation.status, events.terminal_data(generation))

    thread = threading.Thread(target=pipeline, daemon=True)
    thread.start()
    return thread


def run_cli(server: LiveAPI, key: str, photo, out: io.StringIO) -> int:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        return cli.generate(photo, "a pirate", key, http, out=out, poll_seconds=0.02, timeout_seconds=30)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "me.jpg"
    path.write_bytes(images.jpeg())
    return path


def test_generate_shows_a_live_progress_bar_and_prints_urls(live_api, capsys, photo):
    key = create_user(capsys)
    server = live_api()
    out = io.StringIO()
    pipeline = play_pipeline("succeeded", after_connect=server)
    code = run_cli(server, key, photo, out)
    pipeline.join(5)
    text = out.getvalue()
    assert code == 0, text
    assert "progress page: http://127.0.0.1:" in text and "/g/" in text
    assert "queue position 2" in text and "queue position 1" in text
    percents = [int(m) for m in re.findall(r"\] +(\d+)%", text)]
    assert percents == sorted(percents) and percents[0] < 50 and percents[-1] == 100, percents
    assert "animate" in text and "100%  succeeded" in text and "buddy is ready" in text
    assert "/buddy.webm" in text and "share   http" in text and "/b/" in text
    assert len(server.stream_requests) == 1 and "last-event-id" not in server.stream_requests[0]


def test_generate_reconnects_after_a_drop_and_shows_each_event_once(live_api, capsys, photo):
    key = create_user(capsys)
    server = live_api(cut_after=3)
    out = io.StringIO()
    pipeline = play_pipeline("succeeded", after_connect=server)
    code = run_cli(server, key, photo, out)
    pipeline.join(5)
    text = out.getvalue()
    assert code == 0, text
    assert len(server.stream_requests) == 2
    assert server.stream_requests[1]["last-event-id"] == "3"
    # One redraw per event: 4 stages x 2 + 3 queue positions + the terminal event, none twice.
    assert text.count("\r") == 12, text


def test_generate_reports_failure_and_refund(live_api, capsys, photo):
    key = create_user(capsys)
    server = live_api()
    out = io.StringIO()
    pipeline = play_pipeline("failed", after_connect=server)
    code = run_cli(server, key, photo, out)
    pipeline.join(5)
    text = out.getvalue()
    assert code == 1
    assert "Failed: Your photo was rejected by the content filter." in text and "token was refunded" in text


def test_generate_polls_when_the_api_has_no_event_stream(live_api, capsys, photo):
    key = create_user(capsys)
    server = live_api(no_stream=True)
    out = io.StringIO()

    def pipeline():
        gid = pending_generation()
        generations.mark_stage(gid, "animate")
        deadline = time.monotonic() + 5
        while "stage 8/11 animate" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        generations.mark_succeeded(gid, {k: generations.asset_key(gid, k) for k in generations.ASSET_FILES})

    thread = threading.Thread(target=pipeline, daemon=True)
    thread.start()
    code = run_cli(server, key, photo, out)
    thread.join(5)
    text = out.getvalue()
    assert code == 0, text
    assert len(server.stream_requests) == 1 and "stage 8/11 animate" in text and "buddy is ready" in text


def _all():
    from sqlmodel import select

    from include.db import session_scope
    from include.models import Generation

    with session_scope() as session:
        return list(session.exec(select(Generation)).all())


def test_generate_shows_the_api_refusal(client, fresh_app_db, capsys, tmp_path):
    key = create_user(capsys, tokens=0)
    photo = tmp_path / "me.jpg"
    photo.write_bytes(images.jpeg())
    out = io.StringIO()
    assert cli.generate(photo, "a pirate", key, TestClient(app), out=out) == 1
    assert "Refused (402): No tokens left" in out.getvalue()


# --- client commands: me, list, download, keys ---------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _finished(user_id: int) -> str:
    from include import storage
    from include.db import session_scope
    from include.generations import asset_key
    from include.models import Generation

    generation = Generation(user_id=user_id, prompt="a happy pirate", upload_path="uploads/x/photo.jpg", status="succeeded")
    for kind in ("webm", "webp", "gif", "poster"):
        with storage.open_write(asset_key(generation.id, kind)) as out:
            out.write(kind.encode() * 50_000)
        generation.assets[kind] = asset_key(generation.id, kind)
    with session_scope() as session:
        session.add(generation)
    return generation.id


def test_me_and_list(client, capsys):
    user, key = make_user("me@example.com", tokens=2)
    client.headers["Authorization"] = f"Bearer {key}"
    out = io.StringIO()
    assert cli.list_buddies(client, 10, out) == 0 and "No buddies yet." in out.getvalue()
    gid = _finished(user.id)
    assert cli.me(client, out) == 0 and "me@example.com" in out.getvalue() and "2 token(s)" in out.getvalue()
    out = io.StringIO()
    cli.list_buddies(client, 10, out)
    assert out.getvalue().splitlines()[1].split()[:2] == [gid, "succeeded"]


def test_download_saves_every_format_with_plain_lines_or_a_progress_bar(client, tmp_path):
    user, key = make_user("dl@example.com")
    client.headers["Authorization"] = f"Bearer {key}"
    gid = _finished(user.id)
    plain = io.StringIO()
    assert cli.download(client, gid, list(cli.DOWNLOAD_FILES), tmp_path / "plain", plain) == 0
    assert plain.getvalue().count("saved ") == 4 and "\x1b[" not in plain.getvalue()
    assert (tmp_path / "plain" / f"{gid}-buddy.webm").read_bytes() == b"webm" * 50_000
    terminal = Terminal()
    assert cli.download(client, gid, ["gif"], tmp_path / "tty", terminal) == 0
    assert "buddy.gif" in terminal.getvalue() and "saved " not in terminal.getvalue()
    assert (tmp_path / "tty" / f"{gid}-buddy.gif").stat().st_size == 150_000
    assert not list((tmp_path / "tty").glob("*.part"))
    other, other_key = make_user("other@example.com")
    client.headers["Authorization"] = f"Bearer {other_key}"
    with pytest.raises(cli.ApiRefused, match="404"):
        cli.download(client, gid, ["gif"], tmp_path / "x", io.StringIO())


def test_keys_create_list_revoke(client, capsys):
    _, key = make_user("keys@example.com")
    client.headers["Authorization"] = f"Bearer {key}"
    out = io.StringIO()
    assert cli.keys_create(client, "ci", out) == 0
    new_key = out.getvalue().strip()
    assert new_key.startswith("bb_") and "\n" not in new_key
    listing = io.StringIO()
    cli.keys_list(client, listing)
    rows = listing.getvalue().splitlines()[1:]
    assert [r.split()[1] for r in rows] == ["ci", "test"] and all(r.endswith("active") for r in rows)
    key_id = int(rows[0].split()[0])
    assert cli.keys_revoke(client, key_id, io.StringIO()) == 0
    assert client.get("/api/me", headers=auth(new_key)).status_code == 401
    with pytest.raises(cli.ApiRefused, match="404"):
        cli.keys_revoke(client, 999, io.StringIO())


def test_client_commands_need_a_key(monkeypatch, capsys):
    monkeypatch.delenv("BITBUDDIES_API_KEY", raising=False)
    assert cli.main(["me"]) == 2 and "No API key" in capsys.readouterr().err


def test_print_outbox_runs_the_local_vendor_cli_on_the_configured_outbox(tmp_path, monkeypatch, capsys):
    from fulfillment.vendors import ShippingAddress
    from fulfillment.vendors.local import LocalOutboxVendor
    from include.print_vendors import local_outbox_dir

    monkeypatch.setenv("BITBUDDIES_VAR_DIR", str(tmp_path))
    get_settings.cache_clear()
    address = ShippingAddress(name="Ada", address1="1 Main St", city="Springfield", zip="12345", country_code="US")
    LocalOutboxVendor(local_outbox_dir()).submit("ord-9", "orders/ord-9/sheet.pdf", address)
    assert cli.main(["print-outbox", "shipped", "ord-9", "--tracking", "TRK9"]) == 0
    assert cli.main(["print-outbox", "list", "--state", "shipped"]) == 0
    assert "ord-9\tshipped" in capsys.readouterr().out
    assert (tmp_path / "print-outbox" / "ord-9.json").exists()
    get_settings.cache_clear()
