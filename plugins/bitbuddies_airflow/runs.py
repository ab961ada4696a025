"""Which generation a task's DAG run works on.

A run the API started carries the generation's id in its conf (and as its run id). A run an
operator started from the trigger form has none: its first task stores the generation under an
id derived from the run (``include.operator_generations.generation_id_for_run``), and every
task, callback and trigger finds it the same way through :func:`generation_id`.
"""

from __future__ import annotations

from airflow.sdk import get_current_context

from include.generations import GENERATE_DAG_ID
from include.operator_generations import generation_id_for_run


def generation_id(context=None) -> str | None:
    """The generation of the run in ``context`` (the current task's when omitted); None outside generation runs."""
    context = context if context is not None else get_current_context()
    run = context.get("dag_run")
    conf = getattr(run, "conf", None) or {}
    params = context.get("params") or {}
    gid = conf.get("generation_id") or params.get("generation_id")
    if gid:
        return gid
    dag_id = getattr(run, "dag_id", None)
    run_id = getattr(run, "run_id", None)
    if dag_id == GENERATE_DAG_ID and run_id:
        return generation_id_for_run(dag_id, run_id)
    return None


def started_by_operator(context=None) -> bool:
    """Whether the run was started from the trigger form (no generation id in its conf)."""
    context = context if context is not None else get_current_context()
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    params = context.get("params") or {}
    return not (conf.get("generation_id") or params.get("generation_id"))
