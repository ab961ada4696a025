"""Which generation a run works on: the API's id from the conf, else the one derived from the run."""

from __future__ import annotations

from types import SimpleNamespace

from bitbuddies_airflow.runs import generation_id, started_by_operator
from include.generations import GENERATE_DAG_ID
from include.operator_generations import generation_id_for_run


def context(conf: dict, dag_id: str = GENERATE_DAG_ID, run_id: str = "manual__1", params: dict | None = None) -> dict:
    return {"dag_run": SimpleNamespace(conf=conf, dag_id=dag_id, run_id=run_id), "params": params or {}}


def test_an_api_run_names_its_generation():
    ctx = context({"generation_id": "a" * 32}, run_id="a" * 32)
    assert generation_id(ctx) == "a" * 32 and not started_by_operator(ctx)


def test_a_form_run_derives_its_generation_from_the_run():
    # The UI sends every param, generation_id null.
    ctx = context({"generation_id": None, "photo": "/srv/p.jpg"}, params={"generation_id": None})
    assert generation_id(ctx) == generation_id_for_run(GENERATE_DAG_ID, "manual__1")
    assert started_by_operator(ctx)


def test_other_dags_have_no_generation():
    assert generation_id(context({}, dag_id="bitbuddies_sticker_order")) is None
