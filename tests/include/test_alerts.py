"""include/alerts.py: one alert per failed generation, delivered by Pushover or kept in the log and table."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import pytest

from include import alerts
from include.db import session_scope
from include.models import Alert, Generation, utcnow
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)
from tests.fakes.pushover_server import FakePushover


@pytest.fixture
def pushover():
    fake = FakePushover().start()
    alerts.use_pushover_config_source(lambda: alerts.PushoverConfig(fake.token, fake.user, fake.url))
    yield fake
    alerts.use_pushover_config_source(None)
    fake.stop()


@pytest.fixture
def generation(fresh_app_db):
    user, _ = make_user("ada@example.com")
    with session_scope() as session:
        gen = Generation(user_id=user.id, prompt="wave", upload_path="uploads/x/photo.jpg")
        session.add(gen)
    return gen.id


def alert_rows() -> list[Alert]:
    with session_scope() as session:
        return list(session.exec(__import__("sqlmodel").select(Alert)).all())


def test_one_failure_yields_exactly_one_alert(pushover, generation):
    link = "http://127.0.0.1:8080/dags/bitbuddies_generate/runs/x/tasks/animate"
    callers = [
        threading.Thread(target=alerts.generation_failed, args=(generation, "animate", "boom", True, link)) for _ in range(5)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    alerts.generation_failed(generation, "animate", "boom again", True, link)  # e.g. the reconciliation DAG
    assert len(alert_rows()) == 1
    assert len(pushover.messages) == 1 and pushover.refused == []
    sent = pushover.messages[0]
    assert generation in sent["message"] and "ada@example.com" in sent["message"] and "animate" in sent["message"]
    assert "refunded" in sent["message"] and "Error: boom" in sent["message"]
    assert sent["url"] == link and sent["url_title"] == alerts.URL_TITLE and sent["priority"] == "0"
    (row,) = alert_rows()
    assert row.channel == "pushover" and row.delivered_at is not None and row.delivery_error is None


def test_unrefunded_failure_is_urgent_and_long_errors_fit(pushover, generation):
    alerts.generation_failed(generation, "charge_token", "x" * 5000, False, None)
    (sent,) = pushover.messages
    assert sent["priority"] == "1" and "NOT refunded" in sent["message"]
    assert len(sent["message"]) <= 1024 and "url" not in sent


def test_without_pushover_the_alert_is_logged_and_kept(generation, caplog):
    with caplog.at_level("ERROR", logger="include.alerts"):
        alert = alerts.generation_failed(generation, "moderate", "nsfw", True, None)
    assert alert.channel == "log" and alert.delivered_at is not None
    assert generation in caplog.text
    assert [a.key for a in alerts.recent()] == [f"generation_failed:{generation}"]


def test_a_refused_message_keeps_the_error(pushover, generation):
    alerts.use_pushover_config_source(lambda: alerts.PushoverConfig("wrong-token", pushover.user, pushover.url))
    alert = alerts.generation_failed(generation, "animate", "boom", True, None)
    assert alert.delivered_at is None and "application token is invalid" in alert.delivery_error
    assert len(pushover.refused) == 1  # a 400 is not retried


def test_fake_validates_like_pushover(pushover):
    post = lambda **form: httpx.post(f"{pushover.url}/1/messages.json", data=form)  # noqa: E731
    missing = post(token=pushover.token)
    assert missing.status_code == 400 and missing.json()["status"] == 0
    assert missing.json()["user"] == "invalid" and "message cannot be blank" in missing.json()["errors"]
    assert post(token=pushover.token, user=pushover.user, message="x" * 1025).status_code == 400
    assert post(token=pushover.token, user=pushover.user, message="hi", priority="2").status_code == 400
    ok = post(token=pushover.token, user=pushover.user, message="hi")
    assert ok.status_code == 200 and ok.json()["status"] == 1


def test_undelivered_alerts_are_sent_again_once(pushover, generation, monkeypatch):
    alerts.use_pushover_config_source(lambda: alerts.PushoverConfig(pushover.token, pushover.user, "http://127.0.0.1:9"))
    monkeypatch.setattr(alerts.time, "sleep", lambda _s: None)
    down = alerts.generation_failed(generation, "animate", "boom", False, None)
    assert down.delivered_at is None and "unreachable" in down.delivery_error
    assert alerts.redeliver_undelivered() == []  # too recent: its creator may still be sending

    alerts.use_pushover_config_source(lambda: alerts.PushoverConfig(pushover.token, pushover.user, pushover.url))
    (sent,) = alerts.redeliver_undelivered(older_than=timedelta(0))
    assert sent.delivered_at is not None and sent.delivery_error is None
    assert [m["priority"] for m in pushover.messages] == ["1"]  # still urgent: not refunded
    assert alerts.redeliver_undelivered(older_than=timedelta(0)) == []
    assert len(pushover.messages) == 1


def test_an_alert_pushover_refused_is_not_sent_again(pushover, generation):
    alerts.use_pushover_config_source(lambda: alerts.PushoverConfig("wrong-token", pushover.user, pushover.url))
    alerts.generation_failed(generation, "animate", "boom", True, None)
    assert alerts.redeliver_undelivered(older_than=timedelta(0)) == []
    assert len(pushover.refused) == 1


def test_an_alert_whose_creator_died_before_sending_is_sent(pushover, generation):
    # The row exists, no delivery was ever tried: the process died between the two.
    alerts._create(Alert(key="sticker_order_failed:o1", kind="sticker_order_failed", title="t", message="m"))
    (sent,) = alerts.redeliver_undelivered(older_than=timedelta(0))
    assert sent.channel == "pushover" and sent.delivered_at is not None
    assert [m["message"] for m in pushover.messages] == ["m"]


def test_a_stalled_generation_raises_one_alert_naming_the_stuck_task(pushover, generation):
    with session_scope() as session:
        gen = session.get(Generation, generation)
    last = utcnow() - timedelta(minutes=4)
    link = "http://127.0.0.1:8080/dags/bitbuddies_generate/runs/x"
    for _ in range(3):  # the reconciliation DAG finds it stalled on each of its runs
        alerts.generation_stalled(gen, last, {"animate": "queued"}, link)
    (row,) = alert_rows()
    assert row.key == f"generation_stalled:{generation}" and row.kind == "generation_stalled"
    assert len(pushover.messages) == 1
    sent = pushover.messages[0]
    assert "no progress for 4 min" in sent["message"] and "Stuck: animate (queued)" in sent["message"]
    assert sent["title"] == "BitBuddies: generation stuck at animate" and sent["url"] == link
