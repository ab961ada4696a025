"""include/print_vendors.py: the configured vendor, built from the settings."""

from __future__ import annotations

import pytest

from fulfillment.vendors.local import LocalOutboxVendor
from fulfillment.vendors.printful import PrintfulVendor
from include.print_vendors import get_vendor
from include.settings import Settings, get_settings


def test_default_vendor_is_local_under_var_dir():
    vendor = get_vendor()
    assert isinstance(vendor, LocalOutboxVendor)
    assert vendor.outbox_dir == get_settings().var_dir / "print-outbox"


def test_printful_gets_its_settings_as_arguments(tmp_path):
    settings = Settings(var_dir=tmp_path, print_vendor="printful", printful_api_url="http://printful.test",
                        printful_api_key="k", printful_sticker_variant_id=505)
    vendor = get_vendor(settings=settings)
    assert isinstance(vendor, PrintfulVendor) and vendor.variant_id == 505
    vendor.close()
    # A job keeps the vendor it was sent to, whatever the setting says now.
    assert isinstance(get_vendor("local", settings), LocalOutboxVendor)


def test_unknown_vendor_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown print vendor"):
        get_vendor("carrier-pigeon", Settings(var_dir=tmp_path))
