"""The sticker DAG reads as the fulfilment: mapped renders, store, send, deferrable wait, settle teardown."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from bitbuddies_airflow.print_vendor import WaitForPrintOperator
from include.orders import ORDER_DAG_ID

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "sticker_order.py"


@pytest.fixture(scope="module")
def dag():
    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[ORDER_DAG_ID]


def test_the_pipeline_order(dag):
    assert set(dag.params) == {"order_id"}
    order = ["plan_sheets", "render_sheet", "store_sheet", "send_to_vendor", "wait_for_print"]
    for up, down in zip(order, order[1:]):
        assert down in dag.get_task(up).downstream_task_ids, f"{up} -> {down}"
    assert type(dag.get_task("render_sheet")).__name__.endswith("MappedOperator"), "one render task per sheet"
    assert dag.get_task("render_sheet").partial_kwargs.get("pool") == "media_cpu"
    assert isinstance(dag.get_task("wait_for_print"), WaitForPrintOperator)


def test_settle_covers_every_task_and_does_not_decide_the_run(dag):
    settle = dag.get_task("settle_order")
    assert settle.is_teardown and not settle.on_failure_fail_dagrun
    assert settle.retries >= 3
    assert {t.task_id for t in dag.tasks} - {"settle_order"} <= settle.upstream_task_ids
    leaves = {t.task_id for t in dag.tasks if not (t.downstream_task_ids - {"settle_order"})} - {"settle_order"}
    assert leaves == {"wait_for_print", "record_print"}
