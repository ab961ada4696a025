"""The local outbox vendor: idempotent submit, recorded transitions, the CLI."""

from __future__ import annotations

import json

import pytest

from fulfillment.vendors import ShippingAddress, VendorError, VendorJobState
from fulfillment.vendors.local import LocalOutboxVendor, main

ADDRESS = ShippingAddress(name="Ada Lovelace", address1="12 St James's Sq", city="London", zip="SW1Y 4JH", country_code="GB")


@pytest.fixture
def vendor(tmp_path) -> LocalOutboxVendor:
    return LocalOutboxVendor(tmp_path / "outbox")


def test_submit_lands_a_job_file_in_the_outbox(vendor):
    job = vendor.submit("ord-1", "sheets/ord-1.pdf", ADDRESS, quantity=2)
    assert job.state == VendorJobState.SUBMITTED and job.vendor == "local"
    record = json.loads((vendor.outbox_dir / "ord-1.json").read_text())
    assert record["pdf_key"] == "sheets/ord-1.pdf" and record["quantity"] == 2
    assert record["address"]["city"] == "London"
    assert vendor.status(job) == job


def test_submitting_again_returns_the_same_job(vendor):
    first = vendor.submit("ord-1", "sheets/ord-1.pdf", ADDRESS)
    vendor.mark_printed("ord-1")
    again = vendor.submit("ord-1", "sheets/other.pdf", ADDRESS)
    assert again.job_id == first.job_id and again.state == VendorJobState.PRINTED
    assert again.detail["pdf_key"] == "sheets/ord-1.pdf"
    assert len(list(vendor.outbox_dir.glob("*.json"))) == 1


def test_printed_then_shipped_with_tracking(vendor):
    job = vendor.submit("ord-2", "k.pdf", ADDRESS)
    assert vendor.mark_printed("ord-2").state == VendorJobState.PRINTED
    assert len(vendor.mark_printed("ord-2").detail["history"]) == 2  # recorded once
    shipped = vendor.mark_shipped("ord-2", "1Z999", "https://track.example/1Z999", "UPS")
    polled = vendor.status(job)
    assert polled.state == VendorJobState.SHIPPED and polled.state.is_terminal()
    assert (polled.tracking_number, polled.tracking_url, polled.carrier) == ("1Z999", "https://track.example/1Z999", "UPS")
    assert [step["state"] for step in shipped.detail["history"]] == ["submitted", "printed", "shipped"]


def test_failed_is_final(vendor):
    vendor.submit("ord-3", "k.pdf", ADDRESS)
    failed = vendor.mark_failed("ord-3", "printer out of sticker paper")
    assert failed.state == VendorJobState.FAILED and failed.error == "printer out of sticker paper"
    assert vendor.mark_failed("ord-3", "again").error == "printer out of sticker paper"  # recorded once
    with pytest.raises(VendorError, match="cannot become shipped"):
        vendor.mark_shipped("ord-3", "1Z")
    with pytest.raises(VendorError, match="cannot become printed"):
        vendor.mark_printed("ord-3")


def test_shipping_needs_tracking_and_failing_needs_a_reason(vendor):
    vendor.submit("ord-4", "k.pdf", ADDRESS)
    with pytest.raises(VendorError, match="tracking"):
        vendor.mark_shipped("ord-4", " ")
    with pytest.raises(VendorError, match="reason"):
        vendor.mark_failed("ord-4", "")


def test_unknown_and_unsafe_order_ids(vendor):
    with pytest.raises(VendorError, match="no local print job"):
        vendor.mark_printed("nope")
    with pytest.raises(VendorError, match="safe file name"):
        vendor.submit("../escape", "k.pdf", ADDRESS)


def test_cli_moves_jobs_along(vendor, capsys):
    vendor.submit("ord-5", "sheets/ord-5.pdf", ADDRESS)
    vendor.submit("ord-6", "sheets/ord-6.pdf", ADDRESS)
    assert main(["printed", "ord-5"], vendor=vendor) == 0
    assert main(["shipped", "ord-5", "--tracking", "TRK5", "--carrier", "DHL"], vendor=vendor) == 0
    assert main(["failed", "ord-6", "--reason", "smudged"], vendor=vendor) == 0
    assert main(["printed", "ord-6"], vendor=vendor) == 1
    capsys.readouterr()
    assert main(["list", "--state", "shipped"], vendor=vendor) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    assert listed == ["ord-5\tshipped\tsheets/ord-5.pdf\tTRK5"]


def test_cli_outbox_flag(tmp_path, capsys):
    LocalOutboxVendor(tmp_path).submit("ord-7", "k.pdf", ADDRESS)
    assert main(["--outbox", str(tmp_path), "list"]) == 0
    assert "ord-7\tsubmitted" in capsys.readouterr().out


def test_address_validation():
    with pytest.raises(ValueError, match="missing city"):
        ShippingAddress(name="A", address1="B", city="", zip="1", country_code="US")
    with pytest.raises(ValueError, match="two-letter"):
        ShippingAddress(name="A", address1="B", city="C", zip="1", country_code="USA")
