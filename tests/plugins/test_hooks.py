"""plugins/bitbuddies_airflow/hooks.py: the secrets of Airflow's processes are their connections."""

from __future__ import annotations

import asyncio
import json

import pytest
from airflow.sdk.exceptions import AirflowNotFoundException

from bitbuddies_airflow.hooks import InternalApiHook, PrintfulHook, StripeHook
from bitbuddies_airflow.print_vendor import print_vendor
from fulfillment.vendors.local import LocalOutboxVendor
from fulfillment.vendors.printful import PrintfulVendor
from include.settings import get_settings


def set_connection(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.fixture(autouse=True)
def no_connections(monkeypatch):
    for conn_id in ("bitbuddies_stripe", "bitbuddies_printful", "bitbuddies_api"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)
    yield
    get_settings.cache_clear()


def test_stripe_account_from_the_connection(monkeypatch):
    set_connection(monkeypatch, "bitbuddies_stripe", conn_type="generic", password="sk_live_x", extra={"api_base": "http://fake"})
    account = StripeHook().get_account()
    assert (account.api_key, account.api_base) == ("sk_live_x", "http://fake")
    assert "sk_live_x" not in repr(account)


def test_without_the_stripe_connection_the_account_is_empty_whatever_the_environment(monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_from_env")
    get_settings.cache_clear()
    assert StripeHook().get_account().api_key == ""


def test_printful_vendor_takes_the_connections_token_and_address(monkeypatch, tmp_path):
    monkeypatch.setenv("BITBUDDIES_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("BITBUDDIES_PRINT_VENDOR", "printful")
    monkeypatch.setenv("BITBUDDIES_PRINTFUL_STICKER_VARIANT_ID", "505")
    monkeypatch.setenv("BITBUDDIES_PRINTFUL_API_KEY", "from-the-environment")
    get_settings.cache_clear()
    with pytest.raises(AirflowNotFoundException):
        print_vendor()  # Printful without its connection is an error, never the settings' key
    set_connection(monkeypatch, "bitbuddies_printful", conn_type="http", schema="http", host="127.0.0.1", port=9911, password="pf_token")
    vendor = print_vendor()
    assert isinstance(vendor, PrintfulVendor)
    assert vendor._client.headers["Authorization"] == "Bearer pf_token"
    assert str(vendor._client.base_url) == "http://127.0.0.1:9911"
    vendor.close()
    assert isinstance(print_vendor("local"), LocalOutboxVendor)  # a job's own vendor needs no connection


def test_printful_defaults_to_its_public_api_over_https(monkeypatch):
    set_connection(monkeypatch, "bitbuddies_printful", conn_type="http", password="t")
    assert PrintfulHook().get_account().api_url == "https://api.printful.com"
    set_connection(monkeypatch, "bitbuddies_printful", conn_type="http", host="printful.example", password="t")
    assert PrintfulHook().get_account().api_url == "https://printful.example"


def test_internal_api_endpoint_from_the_connection(monkeypatch):
    assert InternalApiHook().get_endpoint() is None
    set_connection(monkeypatch, "bitbuddies_api", conn_type="http", schema="http", host="api", port=8000, password="tok")
    endpoint = InternalApiHook().get_endpoint()
    assert (endpoint.url, endpoint.token) == ("http://api:8000", "tok")
    assert asyncio.run(InternalApiHook.aget_endpoint()) == endpoint
