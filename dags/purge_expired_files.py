"""
# Purge expired files

Every hour: deletes what BitBuddies no longer needs to keep (`include/retention.py`).

- a generation's **photo** and the model provider's **intermediate results** (the local model
  server's jobs and files; fal.ai's payloads and output files of the generation's jobs),
  `BITBUDDIES_UPLOAD_RETENTION_DAYS` (default 7) after the generation ended; its published assets
  stay until its owner deletes it;
- everything of a **deleted** generation whose files could not all be removed at deletion time
  (the model server was down);
- the model server's finished jobs older than the retention period that belong to no generation.

A generation is marked once its files are gone (`files_purged_at`), so a run only looks at what
is due; a failed model-server purge leaves the generation due and fails the task (retried).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task


from bitbuddies_airflow.dag_defaults import PURGE_TIMEOUT, default_args, owner_links
from bitbuddies_airflow.notifiers import RunFailedNotifier
from include import retention


@dag(
    dag_id="bitbuddies_purge_expired_files",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=3, retry_delay=timedelta(minutes=5), execution_timeout=PURGE_TIMEOUT),
    owner_links=owner_links(),
    # The operator hears of a failed run once (alerts table key), on Pushover.
    on_failure_callback=RunFailedNotifier(),
    tags=["bitbuddies", "privacy"],
    doc_md=__doc__,
)
def bitbuddies_purge_expired_files():
    @task
    def purge_due_files() -> dict[str, int]:
        """Deletes the photos, provider results and deleted generations' files that are due (see the DAG's doc)."""
        counts = retention.purge_due()
        print(f"purged the files of {counts['generations']} generation(s) and {counts['model_jobs']} other model job(s)")
        return counts

    purge_due_files()


bitbuddies_purge_expired_files()
