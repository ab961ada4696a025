"""The Airflow REST client against a local fake speaking Airflow's verified behaviour."""

from __future__ import annotations

import socket

import pytest

from include.airflow_client import AirflowClient, AirflowError, AirflowUnavailable
from tests.api.fake_airflow import FakeAirflow


@pytest.fixture
def fake():
    server = FakeAirflow().start()
    yield server
    server.stop()


@pytest.fixture
def client(fake):
    with AirflowClient(base_url=fake.url, username="admin", password="admin", timeout=5) as airflow:
        yield airflow


def test_trigger_creates_the_run_with_conf(client, fake):
    run = client.trigger_dag_run("bitbuddies_generate", "g1", {"generation_id": "g1"})
    assert run["dag_run_id"] == "g1" and run["conf"] == {"generation_id": "g1"}
    assert fake.runs[("bitbuddies_generate", "g1")]["conf"] == {"generation_id": "g1"}


def test_duplicate_trigger_is_success_and_returns_the_existing_run(client, fake):
    client.trigger_dag_run("bitbuddies_generate", "g1", {"n": 1})
    run = client.trigger_dag_run("bitbuddies_generate", "g1", {"n": 2})
    assert run["conf"] == {"n": 1}
    assert fake.trigger_attempts == ["g1", "g1"] and len(fake.runs) == 1


def test_logs_in_once_and_again_after_the_token_expired(client, fake):
    client.trigger_dag_run("d", "r1", {})
    client.get_dag_run("d", "r1")
    assert fake.logins == 1
    fake.expire_tokens()
    assert client.get_dag_run("d", "r1")["dag_run_id"] == "r1"
    assert fake.logins == 2


def test_wrong_credentials_are_a_refusal(fake):
    with AirflowClient(base_url=fake.url, username="admin", password="nope") as airflow:
        with pytest.raises(AirflowError) as caught:
            airflow.trigger_dag_run("d", "r1", {})
    assert caught.value.status_code == 401


def test_missing_run_is_a_refusal(client):
    with pytest.raises(AirflowError) as caught:
        client.get_dag_run("d", "nope")
    assert caught.value.status_code == 404


def test_server_errors_mean_unavailable(client, fake):
    client.trigger_dag_run("d", "r1", {})
    fake.fail_with_500 = True
    with pytest.raises(AirflowUnavailable):
        client.trigger_dag_run("d", "r2", {})


def test_connection_refused_means_unavailable():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with AirflowClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as airflow:
        with pytest.raises(AirflowUnavailable):
            airflow.trigger_dag_run("d", "r1", {})
