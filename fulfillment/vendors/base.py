"""The print vendor interface: what every vendor accepts and reports.

A vendor takes a stored sheet PDF and a shipping address for one sticker order (``submit``)
and reports where the job is (``status``). ``submit`` is idempotent per order id: submitting
the same order again returns the job that already exists, so a retried task never prints
twice. One state enum, shared by every vendor, the DAG and the API.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from enum import StrEnum


class VendorError(RuntimeError):
    """The vendor refused or could not be reached; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class VendorJobState(StrEnum):
    SUBMITTED = "submitted"  # accepted, not printed yet
    PRINTED = "printed"  # printed, waiting for the carrier
    SHIPPED = "shipped"  # handed to the carrier, with tracking
    FAILED = "failed"  # will not be printed: refund the order

    def is_terminal(self) -> bool:
        return self in (VendorJobState.SHIPPED, VendorJobState.FAILED)


@dataclass(frozen=True)
class ShippingAddress:
    name: str
    address1: str
    city: str
    zip: str
    country_code: str  # ISO 3166-1 alpha-2
    address2: str = ""
    state_code: str = ""
    email: str = ""
    phone: str = ""

    def __post_init__(self) -> None:
        missing = [name for name in ("name", "address1", "city", "zip", "country_code") if not getattr(self, name).strip()]
        if missing:
            raise ValueError(f"shipping address is missing {', '.join(missing)}")
        if len(self.country_code) != 2:
            raise ValueError("country_code must be a two-letter ISO code")


@dataclass(frozen=True)
class VendorJob:
    """One order at one vendor. ``job_id`` is the vendor's own id; ``order_id`` is ours."""

    vendor: str
    order_id: str
    job_id: str
    state: VendorJobState
    tracking_number: str = ""
    tracking_url: str = ""
    carrier: str = ""
    error: str = ""
    detail: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        """JSON-ready form, for XCom and the API."""
        return {
            "vendor": self.vendor,
            "order_id": self.order_id,
            "job_id": self.job_id,
            "state": self.state.value,
            "tracking_number": self.tracking_number,
            "tracking_url": self.tracking_url,
            "carrier": self.carrier,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict) -> VendorJob:
        return cls(
            vendor=data["vendor"],
            order_id=data["order_id"],
            job_id=data["job_id"],
            state=VendorJobState(data["state"]),
            tracking_number=data.get("tracking_number", ""),
            tracking_url=data.get("tracking_url", ""),
            carrier=data.get("carrier", ""),
            error=data.get("error", ""),
        )


@dataclass(frozen=True)
class VendorEvent:
    """A vendor's push notification (webhook), reduced to what changes our order."""

    vendor: str
    kind: str  # the vendor's event type, e.g. "package_shipped"
    order_id: str  # ours (the vendor's external id)
    state: VendorJobState
    tracking_number: str = ""
    tracking_url: str = ""
    carrier: str = ""
    reason: str = ""


class PrintVendor(abc.ABC):
    name: str

    @abc.abstractmethod
    def submit(
        self, order_id: str, pdf_key: str, address: ShippingAddress, *, pdf_url: str = "", quantity: int = 1
    ) -> VendorJob:
        """Send one order's sheet to print; idempotent per ``order_id``.

        ``pdf_key`` is the sheet's key in object storage; vendors that fetch the file themselves
        need ``pdf_url``, a URL they can download it from. ``quantity`` is how many sheets.
        """

    @abc.abstractmethod
    def status(self, job: VendorJob) -> VendorJob:
        """The job as the vendor sees it now (read-only: safe to poll from anywhere)."""
