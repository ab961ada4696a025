"""Print vendors behind one interface (``base.PrintVendor``); ``include.print_vendors.get_vendor()``
builds the configured one from the settings."""

from fulfillment.vendors.base import (
    PrintVendor,
    ShippingAddress,
    VendorError,
    VendorEvent,
    VendorJob,
    VendorJobState,
)

__all__ = [
    "PrintVendor",
    "ShippingAddress",
    "VendorError",
    "VendorEvent",
    "VendorJob",
    "VendorJobState",
]
