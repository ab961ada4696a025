"""Starting the generation DAG run for each generation, exactly once.

The submit route tries right away; when Airflow is down the generation stays queued with
``triggered_at`` NULL and the API's background loop (started in the app lifespan) retries
every ``airflow_trigger_interval_seconds``. Several API processes may race on the same
generation: the generation id is the dag_run_id, so Airflow creates the run once and the
loser gets 409, which the client reports as success.
"""

from __future__ import annotations

import asyncio
import logging

from include import generations, orders
from include.airflow_client import AirflowClient, AirflowError, AirflowUnavailable
from include.models import Generation

log = logging.getLogger(__name__)


def dag_run_conf(generation: Generation) -> dict[str, object]:
    return {
        "generation_id": generation.id,
        "user_id": generation.user_id,
        "prompt": generation.prompt,
        "motion": generation.motion or "",
        "upload_path": generation.upload_path,
    }


def _trigger(client: AirflowClient, generation: Generation) -> None:
    client.trigger_dag_run(generations.GENERATE_DAG_ID, generation.id, dag_run_conf(generation))
    generations.mark_triggered(generation.id)


def trigger_generation(client: AirflowClient, generation: Generation) -> bool:
    """Trigger the run for ``generation``; True when the run exists (now or already)."""
    try:
        _trigger(client, generation)
    except AirflowUnavailable as exc:
        log.warning("Airflow unavailable, generation %s will be triggered later: %s", generation.id, exc)
        return False
    except AirflowError as exc:
        # e.g. the DAG is not deployed yet: keep the generation queued and retry later.
        log.error("Airflow refused to trigger generation %s: %s", generation.id, exc)
        return False
    log.info("triggered generation %s", generation.id)
    return True


def trigger_pending(client: AirflowClient) -> int:
    """Trigger every generation still waiting for its run; returns how many were triggered."""
    triggered = 0
    for generation in generations.pending_triggers():
        try:
            _trigger(client, generation)
        except AirflowUnavailable as exc:
            log.info("Airflow still unavailable (%s); retrying later", exc)
            break  # no point hammering a down server for each generation
        except AirflowError as exc:
            log.error("Airflow refused to trigger generation %s: %s", generation.id, exc)
            continue
        triggered += 1
    if triggered:
        log.info("triggered %d pending generation(s)", triggered)
    return triggered


async def run_trigger_loop(client: AirflowClient, interval_seconds: float) -> None:
    """Forever: trigger pending generations and paid sticker orders, then sleep. Cancel the task to stop it."""
    while True:
        try:
            await asyncio.to_thread(trigger_pending, client)
            await asyncio.to_thread(orders.trigger_pending, client)
        except asyncio.CancelledError:
            raise
        except Exception:  # a DB hiccup must not kill the loop for the life of the process
            log.exception("trigger loop iteration failed")
        await asyncio.sleep(interval_seconds)
