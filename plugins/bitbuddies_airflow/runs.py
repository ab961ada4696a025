"""Which generation a task's DAG run works on.

A run the API started carries the generation's id in its conf (and as its run id). A run an
operator started from the trigger form has none: its first task (``charge_token``) stores the
generation under an id derived from the run (``include.operator_generations.generation_id_for_run``),
and every task, callback and trigger finds it the same way through :func:`generation_id`. Until it
is stored (that task's first try, or a request it refused) such a run has no generation yet:
:func:`not_stored_yet` tells the callbacks to skip it.
"""

from __future__ import annotations

from airflow.sdk import get_current_context

from include import generations
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


def not_stored_yet(context=None) -> bool:
    """An operator's run whose generation is not stored yet (its first task's first try, or a
    request that task refused): the task callbacks and pre_execute have nothing to report or check.
    Always False for the API's runs (their generation exists before the run), without a query."""
    context = context if context is not None else get_current_context()
    if not started_by_operator(context):
        return False
    gid = generation_id(context)
    return bool(gid) and not generations.exists(gid)
