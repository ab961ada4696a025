"""The configured print vendor: ``fulfillment.vendors`` built from the settings.

``fulfillment/`` is pure (it never reads the settings): each vendor takes what it needs as
arguments, and this is the one place that hands them the configured values. The DAG's print
tasks, the print webhook and the operator CLI (``bitbuddies print-outbox``) get their vendor here.
The Printful account (API address and token) is the settings' in the API and the CLI; Airflow's
tasks and triggers pass a :class:`PrintfulAccount` read from the Airflow connection
``bitbuddies_printful`` (``plugins/bitbuddies_airflow/hooks.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fulfillment.vendors import PrintVendor
from fulfillment.vendors.local import LocalOutboxVendor
from fulfillment.vendors.printful import PrintfulVendor
from include.settings import Settings, get_settings


@dataclass(frozen=True)
class PrintfulAccount:
    """Where Printful's API is and the token it takes."""

    api_url: str
    api_key: str

    def __repr__(self) -> str:  # never the token in a log line or a traceback
        return f"PrintfulAccount(api_url={self.api_url!r}, api_key={'***' if self.api_key else ''!r})"


def local_outbox_dir(settings: Settings | None = None) -> Path:
    """Where the ``local`` vendor's jobs wait: ``var_dir / "print-outbox"``."""
    return (settings or get_settings()).var_dir / "print-outbox"


def get_vendor(name: str | None = None, settings: Settings | None = None, printful: PrintfulAccount | None = None) -> PrintVendor:
    """The vendor named in settings (``print_vendor``), or ``name`` when given (a job's own vendor).

    ``printful``: the account to use for Printful; the settings' when omitted."""
    settings = settings or get_settings()
    chosen = name or settings.print_vendor
    if chosen == "local":
        return LocalOutboxVendor(local_outbox_dir(settings))
    if chosen == "printful":
        account = printful or PrintfulAccount(settings.printful_api_url, settings.printful_api_key.get_secret_value())
        return PrintfulVendor(account.api_url, account.api_key, settings.printful_sticker_variant_id)
    raise ValueError(f"unknown print vendor {chosen!r}; choose 'local' or 'printful'")
