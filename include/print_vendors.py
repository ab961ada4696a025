"""The configured print vendor: ``fulfillment.vendors`` built from the settings.

``fulfillment/`` is pure (it never reads the settings): each vendor takes what it needs as
arguments, and this is the one place that hands them the configured values. The DAG's print
tasks, the print webhook and the operator CLI (``bitbuddies print-outbox``) get their vendor here.
"""

from __future__ import annotations

from pathlib import Path

from fulfillment.vendors import PrintVendor
from fulfillment.vendors.local import LocalOutboxVendor
from fulfillment.vendors.printful import PrintfulVendor
from include.settings import Settings, get_settings


def local_outbox_dir(settings: Settings | None = None) -> Path:
    """Where the ``local`` vendor's jobs wait: ``var_dir / "print-outbox"``."""
    return (settings or get_settings()).var_dir / "print-outbox"


def get_vendor(name: str | None = None, settings: Settings | None = None) -> PrintVendor:
    """The vendor named in settings (``print_vendor``), or ``name`` when given (a job's own vendor)."""
    settings = settings or get_settings()
    chosen = name or settings.print_vendor
    if chosen == "local":
        return LocalOutboxVendor(local_outbox_dir(settings))
    if chosen == "printful":
        return PrintfulVendor(settings.printful_api_url, settings.printful_api_key, settings.printful_sticker_variant_id)
    raise ValueError(f"unknown print vendor {chosen!r}; choose 'local' or 'printful'")
