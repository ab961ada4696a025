"""GET /g/{id}: the generation page (public facts, timeline, link back to the Airflow run)."""

from __future__ import annotations

from include import events
from include.db import session_scope
from include.generations import mark_failed, mark_succeeded
from include.models import Generation
from tests.api.support import make_user


def new_generation() -> str:
    user, _ = make_user("page@example.com", tokens=1)
    with session_scope() as session:
        generation = Generation(user_id=user.id, prompt="my secret prompt", upload_path="uploads/x/photo.jpg")
        session.add(generation)
    return generation.id


def test_page_shows_progress_and_links_to_the_airflow_run(client, monkeypatch):
    monkeypatch.setenv("BITBUDDIES_AIRFLOW_PUBLIC_URL", "https://airflow.example.com/")
    from include.settings import get_settings

    get_settings.cache_clear()
    gid = new_generation()
    events.record(gid, "stage_started", {"stage": "animate"}, key="s")
    events.record(gid, "queue_position", {"stage": "animate", "position": 4}, key="q")
    page = client.get(f"/g/{gid}?dag_id=bitbuddies_generate")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    html = page.text
    assert f'href=\'https://airflow.example.com/dags/bitbuddies_generate/runs/{gid}\'' in html
    assert "queue position 4" in html and "<progress" in html
    assert 'http-equiv="refresh"' in html  # not finished: the page reloads itself
    assert "my secret prompt" not in html and "page@example.com" not in html


def test_the_tab_of_a_run_started_from_the_trigger_form_shows_its_generation(client, monkeypatch):
    """Such a run's id is Airflow's (manual__...); its generation's id is derived from it, and the
    page links back to the run under Airflow's id."""
    from include.operator_generations import generation_id_for_run
    from include.settings import get_settings

    monkeypatch.setenv("BITBUDDIES_AIRFLOW_PUBLIC_URL", "https://airflow.example.com")
    get_settings.cache_clear()
    run_id = "manual__2026-12-01T06:00:00+00:00"
    user, _ = make_user("form@example.com", tokens=1)
    gid = generation_id_for_run("bitbuddies_generate", run_id)
    with session_scope() as session:
        session.add(Generation(id=gid, user_id=user.id, prompt="p", upload_path="uploads/x/photo.jpg", airflow_run_id=run_id))
    page = client.get(f"/g/{run_id}?dag_id=bitbuddies_generate")
    assert page.status_code == 200 and f"Generation {gid}" in page.text
    assert "href='https://airflow.example.com/dags/bitbuddies_generate/runs/manual__2026-12-01T06%3A00%3A00%2B00%3A00'" in page.text
    assert client.get("/g/manual__2026-12-01T07:00:00+00:00?dag_id=bitbuddies_generate").status_code == 404


def test_failed_generation_shows_the_error_and_refund(client):
    gid = new_generation()
    with session_scope() as session:
        session.get(Generation, gid).refund_state = "refunded"
    mark_failed(gid, "Tom & Jerry can't be animated.", "animate")
    html = client.get(f"/g/{gid}").text
    assert "Tom &amp; Jerry can&#x27;t be animated." in html and "refunded" in html
    assert 'http-equiv="refresh"' not in html


def test_internal_error_text_is_never_shown(client):
    from include import events

    gid = new_generation()
    raw = "ClientError: 403 for https://bucket.s3.amazonaws.com/uploads/x/photo.jpg?X-Amz-Signature=abc at /work/var/storage"
    events.record(gid, "retry", {"stage": "animate", "task": "animate", "try_number": 2, "error": raw})
    mark_failed(gid, raw, "animate")
    html = client.get(f"/g/{gid}").text
    for leak in ("amazonaws", "X-Amz", "/work/var", "ClientError"):
        assert leak not in html, leak
    assert "Something went wrong on our side while making your buddy." in html
    assert all("amazonaws" not in str(e.data) for e in events.history(gid))


def test_succeeded_generation_links_its_share_page(client):
    gid = new_generation()
    generation = mark_succeeded(gid, {})
    html = client.get(f"/g/{gid}").text
    assert f"/b/{generation.slug}" in html and "succeeded" in html


def test_runs_of_other_dags_and_unknown_ids(client):
    gid = new_generation()
    other = client.get(f"/g/{gid}?dag_id=bitbuddies_sticker_order")
    assert other.status_code == 200 and "not BitBuddies generations" in other.text
    assert client.get("/g/" + "0" * 32).status_code == 404
