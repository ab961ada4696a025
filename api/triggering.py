"""The API's trigger loop: starts the DAG run of every stored generation and paid sticker order.

Both go through their ``DagRunOutbox`` (``include/outbox.py``: the error policy is there). The
submit routes try at once; when Airflow is down the row stays pending and this loop, started in
the app lifespan, retries every ``airflow_trigger_interval_seconds``.
"""

from __future__ import annotations

import asyncio
import logging

from include import generations, orders
from include.airflow_client import AirflowClient
from include.models import Generation

log = logging.getLogger(__name__)

OUTBOXES = (generations.OUTBOX, orders.OUTBOX)


def trigger_generation(client: AirflowClient, generation: Generation) -> bool:
    """Trigger the run for ``generation``; True when the run exists (now or already)."""
    return generations.OUTBOX.trigger(client, generation)


def trigger_pending(client: AirflowClient) -> int:
    """One round over every outbox; returns how many runs were started."""
    return sum(outbox.trigger_pending(client) for outbox in OUTBOXES)


async def run_trigger_loop(client: AirflowClient, interval_seconds: float) -> None:
    """Forever: trigger pending generations and paid sticker orders, then sleep. Cancel the task to stop it."""
    while True:
        try:
            await asyncio.to_thread(trigger_pending, client)
        except asyncio.CancelledError:
            raise
        except Exception:  # a DB hiccup must not kill the loop for the life of the process
            log.exception("trigger loop iteration failed")
        await asyncio.sleep(interval_seconds)
