"""The DAG-run outbox: a stored record, then its DAG run triggered, retried until it exists.

Generations and sticker orders start their runs the same way. The row is committed first (a
generation with its charge, an order once paid), then the route tries to trigger its run at
once; a row whose run could not be started keeps ``triggered_at`` NULL and the API's trigger
loop retries it every ``airflow_trigger_interval_seconds``. The row's id is the ``dag_run_id``,
so a run is created once however many processes race: the loser gets 409, which the Airflow
client reports as success, and ``mark_triggered`` keeps the first time.

One error policy for both:
- Airflow unavailable (connection error, 5xx): the row stays pending and the round stops;
  asking a down server once per pending row only adds load and log lines.
- Airflow refuses this row (another 4xx, e.g. the DAG is not deployed yet or rejects the
  conf): the row stays pending, the refusal is logged as an error and the round goes on, so
  one bad row never holds back the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from include.airflow_client import AirflowClient, AirflowError, AirflowUnavailable

log = logging.getLogger(__name__)


class Triggerable(Protocol):
    id: str


Row = TypeVar("Row", bound=Triggerable)


@dataclass(frozen=True)
class DagRunOutbox(Generic[Row]):
    """Where one kind of row gets its DAG run: ``dag_id``, the run's conf, and the row's bookkeeping."""

    what: str  # for logs: "generation", "sticker order"
    dag_id: str
    conf: Callable[[Row], dict[str, object]]
    pending: Callable[[], Sequence[Row]]  # rows still waiting for their run, oldest first
    mark_triggered: Callable[[str], object]

    def _start(self, client: AirflowClient, row: Row) -> None:
        client.trigger_dag_run(self.dag_id, row.id, self.conf(row))
        self.mark_triggered(row.id)

    def trigger(self, client: AirflowClient, row: Row) -> bool:
        """Start the run for ``row``; True when it exists (now or already). On failure the row
        stays pending for the trigger loop."""
        try:
            self._start(client, row)
        except AirflowUnavailable as exc:
            log.warning("Airflow unavailable, %s %s will be triggered later: %s", self.what, row.id, exc)
            return False
        except AirflowError as exc:
            log.error("Airflow refused to trigger %s %s (retried later): %s", self.what, row.id, exc)
            return False
        log.info("triggered %s %s", self.what, row.id)
        return True

    def trigger_pending(self, client: AirflowClient) -> int:
        """Start the run of every pending row (the policy above); returns how many were started."""
        started = 0
        for row in self.pending():
            try:
                self._start(client, row)
            except AirflowUnavailable as exc:
                log.info("Airflow still unavailable (%s); pending %ss are retried next round", exc, self.what)
                break
            except AirflowError as exc:
                log.error("Airflow refused to trigger %s %s (retried next round): %s", self.what, row.id, exc)
                continue
            started += 1
        if started:
            log.info("triggered %d pending %s(s)", started, self.what)
        return started
