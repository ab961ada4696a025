"""Print vendors behind one interface; ``get_vendor()`` picks the configured one."""

from fulfillment.vendors.base import (
    PrintVendor,
    ShippingAddress,
    VendorError,
    VendorEvent,
    VendorJob,
    VendorJobState,
    get_vendor,
)

__all__ = [
    "PrintVendor",
    "ShippingAddress",
    "VendorError",
    "VendorEvent",
    "VendorJob",
    "VendorJobState",
    "get_vendor",
]
