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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement
from sqlmodel import SQLModel, col, select

from include.airflow_client import AirflowClient, AirflowError, AirflowUnavailable
from include.db import session_scope
from include.models import utcnow

log = logging.getLogger(__name__)

# A table with ``id`` (the dag_run_id), ``triggered_at``, ``created_at`` and ``updated_at``.
Row = TypeVar("Row", bound=SQLModel)


@dataclass(frozen=True)
class DagRunOutbox(Generic[Row]):
    """Where one kind of row gets its DAG run: the table, which rows are ready, ``dag_id``, the conf."""

    what: str  # for logs: "generation", "sticker order"
    table: type[Row]
    ready: Callable[[], ColumnElement[bool]]  # which rows may run, e.g. status == "queued"
    dag_id: str
    conf: Callable[[Row], dict[str, object]]

    def pending(self) -> list[Row]:
        """Ready rows whose run has not been started yet, oldest first."""
        table: Any = self.table
        with session_scope() as session:
            query = select(table).where(self.ready(), col(table.triggered_at).is_(None)).order_by(col(table.created_at))
            return list(session.exec(query).all())

    def mark_triggered(self, row_id: str) -> Row:
        """Record that the row's run exists (keeps the first trigger time)."""
        with session_scope(write_lock=True) as session:
            row: Any = session.get(self.table, row_id, with_for_update=True)
            if row is None:
                raise LookupError(f"no {self.what} {row_id}")
            if row.triggered_at is None:
                row.triggered_at = row.updated_at = utcnow()
                session.add(row)
            return row

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
