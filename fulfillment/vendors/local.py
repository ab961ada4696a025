"""The ``local`` print vendor: jobs land in an outbox folder and a person moves them along.

Each job is one JSON state file, ``<outbox>/<order_id>.json`` (the deployment's outbox is
``var_dir / "print-outbox"``, ``include.print_vendors``), holding the sheet's storage key, the address, the state
and its history. Whoever prints the sheet (at home, or at a shop without an API) records what
happened in the sticker DAG's form in Airflow ("Required actions": ``record_print``,
``plugins/bitbuddies_airflow/print_vendor.py``), or with the functions below or the CLI (for scripts;
an open form then still waits for its answer, which is a no-op if it repeats the state):

    bitbuddies print-outbox list [--state submitted]      (the configured outbox)
    bitbuddies print-outbox printed ORDER_ID
    bitbuddies print-outbox shipped ORDER_ID --tracking 1Z999 [--url URL] [--carrier UPS]
    bitbuddies print-outbox failed ORDER_ID --reason "paper jam"
    python -m fulfillment.vendors.local --outbox DIR list  (any outbox folder)

Writes are atomic (temp file + rename) under an exclusive lock, so the DAG polling ``status``
never reads half a file and two people marking the same job cannot interleave.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from fulfillment.vendors.base import PrintVendor, ShippingAddress, VendorError, VendorJob, VendorJobState

VENDOR_NAME = "local"
_ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Which states each state may move to; re-recording the current state is a no-op.
_NEXT_STATES = {
    VendorJobState.SUBMITTED: {VendorJobState.PRINTED, VendorJobState.SHIPPED, VendorJobState.FAILED},
    VendorJobState.PRINTED: {VendorJobState.SHIPPED, VendorJobState.FAILED},
    VendorJobState.SHIPPED: set(),
    VendorJobState.FAILED: set(),
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LocalOutboxVendor(PrintVendor):
    name = VENDOR_NAME

    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = Path(outbox_dir)

    # -- the vendor interface -------------------------------------------------------------

    def submit(
        self, order_id: str, pdf_key: str, address: ShippingAddress, *, pdf_url: str = "", quantity: int = 1
    ) -> VendorJob:
        if not pdf_key:
            raise VendorError("a print job needs the sheet's storage key")
        if quantity < 1:
            raise VendorError("quantity must be at least 1")
        with self._locked():
            existing = self._read(order_id)
            if existing is not None:
                return _job(existing)
            record = {
                "order_id": order_id,
                "job_id": f"local-{order_id}",
                "state": VendorJobState.SUBMITTED.value,
                "pdf_key": pdf_key,
                "pdf_url": pdf_url,
                "quantity": quantity,
                "address": asdict(address),
                "tracking_number": "",
                "tracking_url": "",
                "carrier": "",
                "error": "",
                "history": [{"state": VendorJobState.SUBMITTED.value, "at": _now()}],
            }
            self._write(record)
            return _job(record)

    def status(self, job: VendorJob) -> VendorJob:
        record = self._read(job.order_id)
        if record is None:
            raise VendorError(f"no local print job for order {job.order_id}")
        return _job(record)

    # -- what the person printing records --------------------------------------------------

    def mark_printed(self, order_id: str) -> VendorJob:
        return self._transition(order_id, VendorJobState.PRINTED)

    def mark_shipped(self, order_id: str, tracking_number: str, tracking_url: str = "", carrier: str = "") -> VendorJob:
        if not tracking_number.strip():
            raise VendorError("a shipped job needs a tracking number")
        return self._transition(
            order_id,
            VendorJobState.SHIPPED,
            tracking_number=tracking_number.strip(),
            tracking_url=tracking_url,
            carrier=carrier,
        )

    def mark_failed(self, order_id: str, reason: str) -> VendorJob:
        if not reason.strip():
            raise VendorError("a failed job needs a reason (the customer is told)")
        return self._transition(order_id, VendorJobState.FAILED, error=reason.strip())

    def list_jobs(self, state: VendorJobState | None = None) -> list[VendorJob]:
        jobs = []
        for path in sorted(self.outbox_dir.glob("*.json")):
            job = _job(json.loads(path.read_text()))
            if state is None or job.state == state:
                jobs.append(job)
        return jobs

    # -- storage ----------------------------------------------------------------------------

    def _path(self, order_id: str) -> Path:
        if not _ORDER_ID.match(order_id):
            raise VendorError(f"order id {order_id!r} is not a safe file name")
        return self.outbox_dir / f"{order_id}.json"

    def _read(self, order_id: str) -> dict | None:
        path = self._path(order_id)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None

    def _write(self, record: dict) -> None:
        path = self._path(record["order_id"])
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(record, indent=2, sort_keys=True))
        os.replace(temporary, path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        with open(self.outbox_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _transition(self, order_id: str, target: VendorJobState, **fields: str) -> VendorJob:
        with self._locked():
            record = self._read(order_id)
            if record is None:
                raise VendorError(f"no local print job for order {order_id}")
            current = VendorJobState(record["state"])
            if current == target:
                return _job(record)  # recording the same state twice (a form sent twice) changes nothing
            if target not in _NEXT_STATES[current]:
                raise VendorError(f"order {order_id} is {current.value}; it cannot become {target.value}")
            record.update(fields)
            record["state"] = target.value
            record["history"].append({"state": target.value, "at": _now(), **fields})
            self._write(record)
            return _job(record)


def _job(record: dict) -> VendorJob:
    return VendorJob(
        vendor=VENDOR_NAME,
        order_id=record["order_id"],
        job_id=record["job_id"],
        state=VendorJobState(record["state"]),
        tracking_number=record.get("tracking_number", ""),
        tracking_url=record.get("tracking_url", ""),
        carrier=record.get("carrier", ""),
        error=record.get("error", ""),
        detail={"pdf_key": record["pdf_key"], "quantity": record["quantity"], "history": record["history"]},
    )


def main(argv: list[str] | None = None, vendor: LocalOutboxVendor | None = None, prog: str | None = None) -> int:
    """The outbox CLI on ``vendor`` (``bitbuddies print-outbox`` passes the configured one) or on
    the folder given with ``--outbox``."""
    parser = argparse.ArgumentParser(prog=prog or "python -m fulfillment.vendors.local", description="The local print outbox.")
    if vendor is None:
        parser.add_argument("--outbox", type=Path, required=True, help="outbox folder")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list print jobs")
    listing.add_argument("--state", choices=[state.value for state in VendorJobState])
    commands.add_parser("printed", help="record that a job was printed").add_argument("order_id")
    shipped = commands.add_parser("shipped", help="record that a job was shipped")
    shipped.add_argument("order_id")
    shipped.add_argument("--tracking", required=True)
    shipped.add_argument("--url", default="")
    shipped.add_argument("--carrier", default="")
    failed = commands.add_parser("failed", help="record that a job cannot be printed")
    failed.add_argument("order_id")
    failed.add_argument("--reason", required=True)
    args = parser.parse_args(argv)

    vendor = vendor or LocalOutboxVendor(args.outbox)
    try:
        if args.command == "list":
            jobs = vendor.list_jobs(VendorJobState(args.state) if args.state else None)
            for job in jobs:
                print(f"{job.order_id}\t{job.state.value}\t{job.detail['pdf_key']}\t{job.tracking_number or job.error}")
            return 0
        if args.command == "printed":
            job = vendor.mark_printed(args.order_id)
        elif args.command == "shipped":
            job = vendor.mark_shipped(args.order_id, args.tracking, args.url, args.carrier)
        else:
            job = vendor.mark_failed(args.order_id, args.reason)
    except VendorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{job.order_id}\t{job.state.value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
