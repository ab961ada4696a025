"""include/outbox.py: the one error policy of the DAG-run outbox (generations and sticker orders)."""

from __future__ import annotations

from dataclasses import dataclass

from include import generations, orders
from include.airflow_client import AirflowError, AirflowUnavailable
from include.models import Generation
from include.outbox import DagRunOutbox


@dataclass
class Row:
    id: str


class ScriptedAirflow:
    """Answers trigger_dag_run per run id: None (created) or an exception to raise."""

    def __init__(self, answers: dict[str, Exception | None]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, dict]] = []

    def trigger_dag_run(self, dag_id: str, run_id: str, conf: dict) -> dict:
        self.calls.append((dag_id, run_id, conf))
        if self.answers.get(run_id) is not None:
            raise self.answers[run_id]
        return {"dag_run_id": run_id}


class ListOutbox(DagRunOutbox):
    """The outbox's policy over rows in a list (the table queries are tested with the real ones below)."""

    def __init__(self, rows: list[Row], triggered: list[str]) -> None:
        super().__init__(what="thing", table=Generation, ready=lambda: None, dag_id="some_dag",
                         conf=lambda row: {"thing_id": row.id})
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "triggered", triggered)

    def pending(self):
        return [r for r in self.rows if r.id not in self.triggered]

    def mark_triggered(self, row_id: str):
        self.triggered.append(row_id)


def outbox(rows: list[Row], triggered: list[str]) -> DagRunOutbox:
    return ListOutbox(rows, triggered)


def test_a_refused_row_is_skipped_and_the_round_goes_on():
    rows, triggered = [Row("a"), Row("b"), Row("c")], []
    client = ScriptedAirflow({"b": AirflowError("bad conf", 400)})
    assert outbox(rows, triggered).trigger_pending(client) == 2
    assert triggered == ["a", "c"]
    assert [c[1] for c in client.calls] == ["a", "b", "c"]
    assert client.calls[0] == ("some_dag", "a", {"thing_id": "a"})


def test_an_unavailable_airflow_stops_the_round_and_leaves_the_rest_pending():
    rows, triggered = [Row("a"), Row("b"), Row("c")], []
    client = ScriptedAirflow({"b": AirflowUnavailable("connection refused")})
    assert outbox(rows, triggered).trigger_pending(client) == 1
    assert triggered == ["a"]
    assert [c[1] for c in client.calls] == ["a", "b"]  # c not asked: the server is down
    assert outbox(rows, triggered).trigger_pending(ScriptedAirflow({})) == 2
    assert triggered == ["a", "b", "c"]


def test_trigger_reports_failure_without_marking_the_row():
    triggered: list[str] = []
    box = outbox([], triggered)
    assert box.trigger(ScriptedAirflow({"x": AirflowUnavailable("down")}), Row("x")) is False
    assert box.trigger(ScriptedAirflow({"x": AirflowError("no such DAG", 404)}), Row("x")) is False
    assert triggered == []
    assert box.trigger(ScriptedAirflow({}), Row("x")) is True
    assert triggered == ["x"]


def test_generations_and_sticker_orders_use_the_outbox_with_their_dag():
    assert generations.OUTBOX.dag_id == generations.GENERATE_DAG_ID
    assert orders.OUTBOX.dag_id == orders.ORDER_DAG_ID
