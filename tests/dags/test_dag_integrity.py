"""Every DAG file imports cleanly and follows the house rules; the generation DAG reads as the pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from bitbuddies_airflow.operators import ModelJobOperator
from include.generations import GENERATE_DAG_ID
from include.settings import get_settings
from include.stages import MEDIA_POOL, MODEL_STAGES, STAGE_NAMES, model_pool

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_cleanly(path):
    bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, f"{path.name} failed to import:\n{bag.import_errors}"
    assert bag.dags, f"{path.name} defines no DAG"


def test_house_rules(dagbag):
    problems = []
    for dag_id, dag in dagbag.dags.items():
        if not dag.tags:
            problems.append(f"{dag_id}: no tags")
        if not (dag.doc_md or "").strip():
            problems.append(f"{dag_id}: no doc_md")
        for t in dag.tasks:
            if t.owner in (None, "", "airflow"):
                problems.append(f"{dag_id}.{t.task_id}: no owner")
            if t.retries < 1:
                problems.append(f"{dag_id}.{t.task_id}: no retries")
    assert not problems, "\n".join(problems)


def test_generation_dag_is_the_pipeline(dagbag):
    dag = dagbag.dags[GENERATE_DAG_ID]
    assert dag.schedule is None or str(dag.timetable.summary).lower() in ("none", "null")
    assert set(dag.params) >= {"generation_id", "user_id", "prompt", "upload_path"}
    # Every model stage of include/stages.py is a ModelJobOperator with its declared pool and waits.
    assert list(MODEL_STAGES) == ["moderate", "analyze", "cartoonize", "expand_full_body", "segment_image", "animate", "segment_video"]
    for stage in MODEL_STAGES.values():
        task = dag.get_task(stage.name)
        assert isinstance(task, ModelJobOperator), stage.name
        assert task.stage == stage.name
        assert task.pool == model_pool(get_settings().model_provider), f"{stage.name} is not rate-limited by the provider's pool"
        waits = stage.waits
        assert (task.poll_interval, task.job_timeout, task.grace) == (waits.poll_interval, waits.job_timeout, waits.grace)
    # Every declared stage is a task (charge is charge_token), so progress names real tasks; publish
    # is the end of transcode's task (reporting.inner_stage publishes its progress).
    task_ids = {t.task_id for t in dag.tasks}
    assert [name for name in STAGE_NAMES if not (name in task_ids or f"{name}_token" in task_ids)] == ["publish"]
    # The pipeline order, as PRODUCT.md lists it; moderate and analyze both read the photo and run
    # side by side, and nothing is cartoonized before the photo passed moderation.
    assert {"moderate", "analyze"} <= dag.get_task("charge_token").downstream_task_ids
    assert {"moderate", "analyze"} <= dag.get_task("cartoonize").upstream_task_ids
    # analyze decides the body (it skips expand_full_body, a direct downstream, for a whole subject).
    assert type(dag.get_task("analyze")).__name__ == "AnalyzeOperator"
    assert dag.get_task("analyze").expand_task_id == "expand_full_body"
    assert dag.get_task("expand_full_body").upstream_task_ids == {"analyze", "cartoonize"}
    order = ["cartoonize", "segment_image", "animate", "segment_video", "transcode"]
    for up, down in zip(order, order[1:]):
        assert down in dag.get_task(up).downstream_task_ids, f"{up} -> {down}"
    # The fallback formats are encoded beside the buddy's, below it in the media pool's line.
    assert dag.get_task("encode_fallbacks").upstream_task_ids == {"segment_video"}
    assert dag.get_task("transcode").priority_weight > dag.get_task("encode_fallbacks").priority_weight
    assert "cartoonize" in dag.get_task("expand_full_body").upstream_task_ids
    assert dag.get_task("segment_image").trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("transcode").pool == dag.get_task("encode_fallbacks").pool == MEDIA_POOL


def test_refund_covers_every_task_and_the_run_still_fails(dagbag):
    dag = dagbag.dags[GENERATE_DAG_ID]
    refund = dag.get_task("refund_token")
    # A teardown runs once everything else is done, whatever happened, and does not decide the run's
    # state: a failed generation's run ends failed even though its refund succeeded.
    assert refund.is_teardown and not refund.on_failure_fail_dagrun
    assert refund.retries >= 3
    others = {t.task_id for t in dag.tasks} - {"refund_token"}
    assert others <= refund.upstream_task_ids
    leaves = {t.task_id for t in dag.tasks if not (t.downstream_task_ids - {"refund_token"})} - {"refund_token"}
    # transcode publishes the generation; the fallback formats are encoded beside it.
    assert leaves == {"transcode", "encode_fallbacks"}


@pytest.mark.parametrize(
    ("dag_id", "task_id"),
    [
        (GENERATE_DAG_ID, "charge_token"),  # downloads an operator's photo
        (GENERATE_DAG_ID, "transcode"),
        ("bitbuddies_sticker_order", "render_sheet"),
        ("bitbuddies_sticker_order", "store_sheet"),
        ("bitbuddies_sticker_order", "send_to_vendor"),
    ],
)
def test_tasks_that_can_hang_have_an_execution_timeout(dagbag, dag_id, task_id):
    timeout = dagbag.dags[dag_id].get_task(task_id).execution_timeout
    assert timeout is not None and timeout.total_seconds() >= 60


def test_every_task_has_the_owner_with_a_link_a_doc_and_a_timeout_where_it_can_hang(dagbag):
    """Tasks a worker runs stop after their execution_timeout; deferred waits (model jobs, the print
    vendor) have their trigger's timeout instead, forms in Required actions their response_timeout."""
    from bitbuddies_airflow.dag_defaults import OWNER
    from bitbuddies_airflow.operators import ModelJobOperator
    from bitbuddies_airflow.print_vendor import WaitForPrintOperator

    from airflow.providers.standard.operators.hitl import HITLOperator

    # Deferred waits and human-in-the-loop forms (their response_timeout) have their own timeouts.
    deferred = (ModelJobOperator, WaitForPrintOperator, HITLOperator)
    problems = []
    for dag_id, dag in dagbag.dags.items():
        if dag.owner_links.get(OWNER) != get_settings().dag_owner_link:
            problems.append(f"{dag_id}: no owner link for {OWNER}")
        for t in dag.tasks:
            kwargs = getattr(t, "partial_kwargs", None) or {}
            if t.owner != OWNER:
                problems.append(f"{dag_id}.{t.task_id}: owner {t.owner!r}")
            if not (t.doc_md or kwargs.get("doc_md") or "").strip():
                problems.append(f"{dag_id}.{t.task_id}: no doc_md")
            timeout = t.execution_timeout or kwargs.get("execution_timeout")
            if not isinstance(t, deferred) and timeout is None:
                problems.append(f"{dag_id}.{t.task_id}: no execution_timeout")
    assert not problems, "\n".join(problems)
