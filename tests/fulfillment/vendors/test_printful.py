"""The Printful-style adapter against a local server speaking that API (real HTTP)."""

from __future__ import annotations

import json

import pytest

from fulfillment.vendors import ShippingAddress, VendorError, VendorJob, VendorJobState
from fulfillment.vendors.printful import PrintfulVendor, job_from_order, parse_webhook

ADDRESS = ShippingAddress(
    name="Grace Hopper", address1="1 Navy Way", city="Arlington", zip="22202", country_code="us", state_code="VA"
)
PDF_URL = "https://files.example/sheets/ord-1.pdf"


@pytest.fixture
def vendor(fake_printful):
    client = PrintfulVendor(fake_printful.url, fake_printful.api_key, variant_id=505, backoff_seconds=0.01)
    yield client
    client.close()


def test_submit_creates_a_confirmed_order_with_the_sheet(vendor, fake_printful):
    job = vendor.submit("ord-1", "sheets/ord-1.pdf", ADDRESS, pdf_url=PDF_URL, quantity=3)
    assert job.state == VendorJobState.SUBMITTED and job.vendor == "printful" and job.order_id == "ord-1"
    order = fake_printful.by_external_id("ord-1")
    assert str(order["id"]) == job.job_id and order["status"] == "pending"
    (item,) = order["items"]
    assert item["variant_id"] == 505 and item["quantity"] == 3
    assert item["files"][0]["url"] == PDF_URL
    assert order["recipient"]["country_code"] == "US" and order["recipient"]["state_code"] == "VA"


@pytest.mark.parametrize("duplicate_mode", ["return_existing", "error"])
def test_submit_is_idempotent_per_order(vendor, fake_printful, duplicate_mode):
    fake_printful.duplicate_mode = duplicate_mode
    first = vendor.submit("ord-1", "k.pdf", ADDRESS, pdf_url=PDF_URL)
    second = vendor.submit("ord-1", "k.pdf", ADDRESS, pdf_url=PDF_URL)
    assert second.job_id == first.job_id
    assert len(fake_printful.orders) == 1


def test_a_lost_create_response_is_retried_without_a_second_order(vendor, fake_printful):
    fake_printful.duplicate_mode = "error"
    fake_printful.drop_create_response = True  # created, but the answer is a 503
    job = vendor.submit("ord-1", "k.pdf", ADDRESS, pdf_url=PDF_URL)
    assert len(fake_printful.orders) == 1
    assert job.job_id == str(fake_printful.by_external_id("ord-1")["id"])


def test_rate_limits_and_server_errors_are_retried(vendor, fake_printful):
    fake_printful.fail_next = [429, 502]
    job = vendor.submit("ord-1", "k.pdf", ADDRESS, pdf_url=PDF_URL)
    assert job.state == VendorJobState.SUBMITTED
    assert len(fake_printful.orders) == 1


def test_persistent_outage_is_a_retryable_vendor_error(vendor, fake_printful):
    fake_printful.fail_next = [503] * 10
    with pytest.raises(VendorError) as raised:
        vendor.submit("ord-1", "k.pdf", ADDRESS, pdf_url=PDF_URL)
    assert raised.value.retryable


def test_a_wrong_key_is_a_final_error(fake_printful):
    vendor = PrintfulVendor(fake_printful.url, "wrong", variant_id=505, backoff_seconds=0.01)
    with pytest.raises(VendorError, match="401") as raised:
        vendor.submit("ord-1", "k.pdf", ADDRESS, pdf_url=PDF_URL)
    assert not raised.value.retryable


def test_submit_needs_a_url_the_vendor_can_fetch(vendor):
    with pytest.raises(VendorError, match="pdf_url"):
        vendor.submit("ord-1", "k.pdf", ADDRESS)


def test_status_follows_the_order_to_shipped_with_tracking(vendor, fake_printful):
    job = vendor.submit("ord-1", "k.pdf", ADDRESS, pdf_url=PDF_URL)
    fake_printful.ship("ord-1", "9400111")
    shipped = vendor.status(job)
    assert shipped.state == VendorJobState.SHIPPED
    assert (shipped.tracking_number, shipped.carrier) == ("9400111", "USPS")
    assert shipped.tracking_url == "https://track.example/9400111"


def test_status_of_a_failed_order(vendor, fake_printful):
    job = vendor.submit("ord-1", "k.pdf", ADDRESS, pdf_url=PDF_URL)
    fake_printful.fail("ord-1", "file could not be downloaded")
    assert vendor.status(job).state == VendorJobState.FAILED


def test_status_of_an_unknown_order(vendor):
    unknown = VendorJob(vendor="printful", order_id="ghost", job_id="1", state=VendorJobState.SUBMITTED)
    with pytest.raises(VendorError, match="no order"):
        vendor.status(unknown)


def test_package_shipped_webhook(vendor, fake_printful):
    vendor.submit("ord-1", "k.pdf", ADDRESS, pdf_url=PDF_URL)
    body = json.dumps(fake_printful.ship("ord-1", "TRK-42", carrier="FEDEX")).encode()
    event = parse_webhook(body)
    assert (event.kind, event.order_id, event.state) == ("package_shipped", "ord-1", VendorJobState.SHIPPED)
    assert (event.tracking_number, event.carrier) == ("TRK-42", "FEDEX")


def test_order_failed_webhook(vendor, fake_printful):
    vendor.submit("ord-1", "k.pdf", ADDRESS, pdf_url=PDF_URL)
    event = parse_webhook(fake_printful.fail("ord-1", "address undeliverable"))
    assert (event.kind, event.order_id, event.state) == ("order_failed", "ord-1", VendorJobState.FAILED)
    assert event.reason == "address undeliverable"


def test_other_webhooks_are_ignored_and_garbage_refused():
    assert parse_webhook({"type": "stock_updated", "data": {}}) is None
    with pytest.raises(ValueError, match="not JSON"):
        parse_webhook(b"<html>")
    with pytest.raises(ValueError, match="no data"):
        parse_webhook({"type": "package_shipped"})
    with pytest.raises(ValueError, match="external_id"):
        parse_webhook({"type": "order_failed", "data": {"order": {}}})


def test_status_mapping_and_unknown_status():
    assert job_from_order({"id": 1, "external_id": "o", "status": "partial"}).state == VendorJobState.PRINTED
    assert job_from_order({"id": 1, "external_id": "o", "status": "canceled"}).state == VendorJobState.FAILED
    with pytest.raises(VendorError, match="unknown status"):
        job_from_order({"id": 1, "external_id": "o", "status": "teleported"})


def test_job_round_trips_through_a_dict():
    job = VendorJob(vendor="printful", order_id="o", job_id="7", state=VendorJobState.SHIPPED, tracking_number="T")
    assert VendorJob.from_dict(json.loads(json.dumps(job.to_dict()))) == job


def test_configuration_is_required():
    with pytest.raises(ValueError, match="API key"):
        PrintfulVendor("http://x", "", variant_id=1)
    with pytest.raises(ValueError, match="variant"):
        PrintfulVendor("http://x", "k", variant_id=0)
