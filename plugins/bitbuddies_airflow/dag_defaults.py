"""What every BitBuddies DAG shares: who owns it, where the owner is reached, and how long a task
that can hang may run.

- ``OWNER`` is every task's ``owner``; ``owner_links()`` makes it a link in the Airflow UI's DAG
  list (setting ``dag_owner_link``: the team's runbook page or a ``mailto:``).
- The timeouts are each task's ``execution_timeout``: Airflow stops a task that runs longer (and
  retries it, as for any failure). Generous: a loaded worker is slow, a hung one never ends. They
  are for work a worker does; deferred waits (model jobs, the print vendor) have their own trigger
  timeouts and take none of these.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from include.settings import get_settings

OWNER = "bitbuddies"

# A task that only reads and writes the app DB: minutes mean a lock held by a dead process.
DB_TIMEOUT = timedelta(minutes=2)
# One call (with its own retries) to an outside service: the print vendor's API, Stripe, the model server.
VENDOR_TIMEOUT = timedelta(minutes=5)
# Downloading the photo of a run started from the trigger form.
DOWNLOAD_TIMEOUT = timedelta(minutes=5)
# Rendering sticker sheets and joining them into the order's PDFs.
RENDER_TIMEOUT = timedelta(minutes=10)
# ffmpeg encodes on a media worker.
ENCODE_TIMEOUT = timedelta(minutes=20)
# The hourly purge: many generations' files at the model provider and in storage.
PURGE_TIMEOUT = timedelta(minutes=30)
# One pass of the reconciliation DAG's tasks: well within its 5-minute schedule, so a hung pass
# (max_active_runs=1) cannot hold back the next one for long.
RECONCILE_TIMEOUT = timedelta(minutes=4)


def owner_links() -> dict[str, str]:
    """The DAG's ``owner_links``: the owner's name in the UI links to where the team is reached."""
    return {OWNER: get_settings().dag_owner_link}


def default_args(**policy: Any) -> dict[str, Any]:
    """A DAG's ``default_args``: the shared owner, plus the DAG's own retry policy and callbacks."""
    return {"owner": OWNER, **policy}
