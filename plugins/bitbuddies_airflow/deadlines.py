"""What happens when a generation's run misses its deadline (Airflow's ``DeadlineAlert``).

The generation DAG declares a deadline of ``deadline_alert_minutes`` (default
``generation_deadline_minutes``) after its run was queued; when a run has not finished by then, Airflow's triggerer awaits
:func:`alert_overdue_generation` with a small context (the run as the REST API shows it, and the
deadline). It raises the ``generation_overdue`` alert once per generation (``include/alerts.py``);
the reconciliation DAG still fails and refunds the generation, as for any stuck one. This module
must be importable by the triggerer: it lives in the plugins folder.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

from include import alerts
from include.generations import GENERATE_DAG_ID
from include.operator_generations import generation_id_for_run
from include.settings import get_settings

log = logging.getLogger(__name__)


def overdue_generation(context: dict[str, Any]) -> tuple[str, str] | None:
    """(generation id, run id) of the run in a deadline callback's context."""
    run = (context or {}).get("dag_run") or {}
    run_id = run.get("dag_run_id") or run.get("run_id")
    if not run_id:
        return None
    gid = (run.get("conf") or {}).get("generation_id") or generation_id_for_run(run.get("dag_id") or GENERATE_DAG_ID, run_id)
    return gid, run_id


async def alert_overdue_generation(context: dict[str, Any] | None = None, **_: Any) -> str | None:
    """The DeadlineAlert's callback (in the triggerer): alert the operator, once per generation."""
    found = overdue_generation(context or {})
    if found is None:
        log.warning("deadline callback without a run: %s", context)
        return None
    gid, run_id = found
    deadline_time = str(((context or {}).get("deadline") or {}).get("deadline_time") or "") or None
    url = f"{get_settings().resolved_airflow_public_url}/dags/{GENERATE_DAG_ID}/runs/{quote(run_id, safe='')}"
    alert = await asyncio.to_thread(alerts.generation_overdue, gid, run_id, deadline_time, url)
    return alert.key
