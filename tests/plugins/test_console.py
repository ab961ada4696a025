"""plugins/bitbuddies_airflow/console.py: the operator's Alerts and Ledger audit pages, read-only, signed-in only."""

from __future__ import annotations

import pytest
from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse
from fastapi.testclient import TestClient

from bitbuddies_airflow import console
from include import alerts, ledger
from include.db import session_scope
from include.models import Generation, LedgerEntry
from tests.api.support import fresh_app_db, make_user  # noqa: F401  (fixture)


@pytest.fixture
def client(fresh_app_db):
    console.app.dependency_overrides[console.operator] = lambda: "admin"
    yield TestClient(console.app)
    console.app.dependency_overrides.clear()


def test_without_an_airflow_session_the_pages_are_refused(fresh_app_db):
    anonymous = TestClient(console.app)
    for page in ("/alerts", "/audit"):
        assert anonymous.get(page).status_code == 401


def test_the_alerts_page_lists_each_alert_with_its_delivery(client):
    alerts.dag_run_failed("bitbuddies_sticker_order", "run-1", "send_to_vendor", "vendor <down>", "http://airflow/x")
    page = client.get("/alerts")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "send_to_vendor" in page.text and "vendor &lt;down&gt;" in page.text  # escaped
    assert "dag_run_failed" in page.text and "http://airflow/x" in page.text


def test_the_audit_page_shows_the_counts_and_the_violations(client):
    user, _ = make_user(tokens=1)
    ledger.create_paid_generation(Generation(user_id=user.id, prompt="p", upload_path="uploads/x/photo.jpg"))
    page = client.get("/audit")
    assert "No violations" in page.text and "<dt>Charges</dt><dd>1</dd>" in page.text
    with session_scope() as session:  # a refund without its charge breaks the ledger
        session.add(LedgerEntry(user_id=user.id, amount=1, reason="refund", idempotency_key="refund:nothing"))
    page = client.get("/audit")
    assert "violations" in page.text and "refers to no charge" in page.text


def test_the_plugin_puts_both_pages_in_the_navigation():
    from bitbuddies_plugin import BitBuddiesPlugin, CONSOLE_PREFIX

    nav = [ExternalViewResponse.model_validate(v) for v in BitBuddiesPlugin.external_views if v["destination"] == "nav"]
    assert {(v.name, v.href) for v in nav} == {("Alerts", f"{CONSOLE_PREFIX}/alerts"), ("Ledger audit", f"{CONSOLE_PREFIX}/audit")}
    assert all(v.url_route for v in nav)  # the UI lists views with a url_route only
    [mounted] = BitBuddiesPlugin.fastapi_apps
    assert mounted["app"] is console.app and mounted["url_prefix"] == CONSOLE_PREFIX
