"""Clearing a run of a DAG with a ``DAGRUN_QUEUED_AT`` deadline, as Airflow 3.3 means it to work.

Airflow 3.3's ``clear_task_instances`` moves the run's queued-at deadlines along with the new
``queued_at`` (``airflow.models.taskinstance._recalculate_dagrun_queued_at_deadlines``), but reads
the alert's interval as a number of seconds while the ``deadline_alert`` table stores it
serialized (``{"__type": ..., "__data__": seconds}``): every clear of such a run (the REST API's
``clearTaskInstances``, the UI's "Clear") fails with a 500 (``TypeError: unsupported type for
timedelta seconds component: dict``) until the deadline has passed. The generation DAG's deadline
is of that kind (``dags/generate_buddy.py``), and operators clear runs.

:func:`apply` replaces that one function with the same computation on the decoded interval; the
api-server applies it when it loads the BitBuddies plugin (``plugins/bitbuddies_plugin.py``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

log = logging.getLogger(__name__)


def interval_seconds(interval) -> float:
    """A deadline alert's stored interval in seconds: a bare number (legacy rows) or serialized."""
    if isinstance(interval, (int, float)):
        return float(interval)
    if isinstance(interval, dict) and isinstance(interval.get("__data__"), (int, float)):
        return float(interval["__data__"])
    raise ValueError(f"not a fixed deadline interval: {interval!r}")


def recalculate_dagrun_queued_at_deadlines(dagrun, new_queued_at: datetime, session) -> None:
    """Move the run's unmissed queued-at deadlines to ``new_queued_at`` + their interval (not committed here)."""
    from sqlalchemy import false, select

    from airflow.models.deadline import Deadline, ReferenceModels
    from airflow.models.deadline_alert import DeadlineAlert as DeadlineAlertModel

    rows = session.execute(
        select(Deadline, DeadlineAlertModel)
        .join(DeadlineAlertModel, Deadline.deadline_alert_id == DeadlineAlertModel.id)
        .where(
            Deadline.dagrun_id == dagrun.id,
            Deadline.missed == false(),
            DeadlineAlertModel.reference[ReferenceModels.REFERENCE_TYPE_FIELD].as_string()
            == ReferenceModels.DagRunQueuedAtDeadline.__name__,
        )
    ).all()
    for deadline, alert in rows:
        try:
            deadline.deadline_time = new_queued_at + timedelta(seconds=interval_seconds(alert.interval))
        except ValueError:
            log.warning("deadline %s of run %s keeps its time: %s", deadline.id, dagrun.run_id, alert.interval)


def apply() -> None:
    from airflow.models import taskinstance

    taskinstance._recalculate_dagrun_queued_at_deadlines = recalculate_dagrun_queued_at_deadlines
