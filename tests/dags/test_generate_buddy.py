"""The generation DAG's own tasks, run against a fake model provider: what the DAG file wires in.

The NSFW gate and the review band live in the DAG's ``moderate`` task (``ModerateOperator``):
these tests take the real ``moderate`` task from the DAG file, so removing or loosening the gate
there fails them.
"""

from __future__ import annotations

import copy

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import AirflowFailException, DownstreamTasksSkipped

from include.generations import GENERATE_DAG_ID
from include.db import session_scope
from tests.api.support import fresh_app_db  # noqa: F401  (fixture)
from tests.dags.test_dag_integrity import DAGS
from tests.plugins.test_operators import make_context, queue  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def dag():
    return DagBag(dag_folder=str(DAGS / "generate_buddy.py")).dags[GENERATE_DAG_ID]


def moderate_task(dag):
    # The DAG's own operator and gate; only its input (the photo_url macro, rendered at run
    # time) is replaced by a plain URL so the task can run outside a DAG run.
    task = copy.copy(dag.get_task("moderate"))
    task.inputs = {"image_url": "http://photos.example/p.jpg"}
    return task


def test_the_dags_moderate_task_fails_an_nsfw_photo_without_retry(dag, queue):
    queue.next_job = {"states": ["COMPLETED"], "result": {"nsfw": True, "score": 0.97}}
    with pytest.raises(AirflowFailException, match="nudity"):
        moderate_task(dag).execute(make_context())
    assert len(queue.submissions) == 1


def test_the_dags_moderate_task_passes_a_clean_photo_and_skips_review(dag, queue):
    queue.next_job = {"states": ["COMPLETED"], "result": {"nsfw": False, "score": 0.01}}
    context = make_context()
    with pytest.raises(DownstreamTasksSkipped) as skipped:
        moderate_task(dag).execute(context)
    assert skipped.value.tasks == ["review"]  # only the review: cartoonize still runs
    assert context["ti"].xcoms["return_value"]["nsfw"] is False


@pytest.mark.parametrize("cut_off", [False, True])
def test_the_dags_analyze_task_skips_the_expansion_of_a_whole_subject(dag, queue, cut_off):
    queue.next_job = {"states": ["COMPLETED"], "result": {"cut_off": cut_off, "image": {"url": "http://files/a.png"}}}
    task = copy.copy(dag.get_task("analyze"))
    task.inputs = {"image_url": "http://photos.example/p.jpg"}
    context = make_context()
    if cut_off:
        assert task.execute(context)["cut_off"] is True  # expand_full_body runs after cartoonize
    else:
        with pytest.raises(DownstreamTasksSkipped) as skipped:
            task.execute(context)
        assert skipped.value.tasks == ["expand_full_body"]  # only the expansion: cartoonize still runs
        assert context["ti"].xcoms["return_value"]["cut_off"] is False
    assert context["ti"].xcoms["image_url"] == "http://files/a.png"  # cartoonize's input either way


@pytest.mark.parametrize("flagged", [False, True])
def test_the_dags_moderate_task_leaves_a_borderline_photo_to_review(dag, queue, flagged):
    # The default band is [0.30, 0.45): inside it the operator decides, even over the model's flag.
    queue.next_job = {"states": ["COMPLETED"], "result": {"nsfw": flagged, "score": 0.38}}
    result = moderate_task(dag).execute(make_context())
    assert result["score"] == 0.38
    assert dag.get_task("review").downstream_task_ids == {"cartoonize", "refund_token"}
    assert dag.get_task("cartoonize").trigger_rule == "none_failed_min_one_success"


def validated(dag, conf: dict) -> dict:
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return params.validate()


def test_the_trigger_form_is_valid_with_its_defaults(dag):
    # Airflow's UI keeps Trigger disabled while the form does not validate.
    assert validated(dag, {})["payment"] == "user_tokens"


def test_the_apis_conf_still_validates(dag):
    from include.generations import dag_run_conf
    from include.models import Generation

    conf = dag_run_conf(Generation(id="a" * 32, user_id=7, prompt="wave", motion=None, upload_path="uploads/a/photo.jpg"))
    assert validated(dag, conf)["generation_id"] == "a" * 32


@pytest.mark.parametrize(
    "conf",
    [
        {"photo": "photo.jpg"},  # neither a URL nor an absolute path
        {"email": "not-an-email"},
        {"motion": "moonwalk"},
        {"payment": "free"},
        {"prompt": ""},
        {"generation_id": "short"},
    ],
)
def test_the_form_refuses_bad_values(dag, conf):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        validated(dag, conf)


def test_a_form_request_validates(dag):
    conf = {"photo": "https://photos.example/cat.jpg", "email": "ada@example.com", "motion": "wave", "payment": "operator_grant"}
    assert validated(dag, conf)["photo"] == "https://photos.example/cat.jpg"
    assert validated(dag, {"photo": "/srv/photos/cat.jpg"})["photo"] == "/srv/photos/cat.jpg"


def test_the_photo_reaches_moderate_and_analyze_as_the_providers_url(dag, fresh_app_db):
    # No task of its own: the DAG's photo_url macro renders the provider URL inside the submitting task.
    from types import SimpleNamespace

    from bitbuddies_airflow.storage import provider_url
    from include.models import Generation
    from include.operator_generations import generation_id_for_run
    from tests.api.support import make_user

    # An operator's run (trigger form): charge_token stored its generation under the run's id.
    run_id = "manual__2026-12-01T10:00:00+00:00"
    user, _ = make_user()
    with session_scope() as session:
        session.add(Generation(id=generation_id_for_run(GENERATE_DAG_ID, run_id), user_id=user.id, prompt="wave", upload_path="uploads/op/photo.jpg"))
    runs = {
        "uploads/g/photo.jpg": ({"upload_path": "uploads/g/photo.jpg"}, {"generation_id": "a" * 32, "upload_path": "uploads/g/photo.jpg"}),
        "uploads/op/photo.jpg": ({"upload_path": None}, {"photo": "/srv/p.jpg"}),
    }
    for key, (params, conf) in runs.items():
        dag_run = SimpleNamespace(dag_id=GENERATE_DAG_ID, run_id=run_id, conf=conf)
        for task_id in ("moderate", "analyze"):
            task = dag.get_task(task_id)
            rendered = task.render_template(task.inputs, {"params": params, "dag_run": dag_run}, jinja_env=dag.get_template_env())
            assert rendered == {"image_url": provider_url(key)}, task_id
    assert "photo_url" not in dag.task_ids
    assert "store_generation" not in dag.task_ids  # folded into charge_token: one task process fewer per run


@pytest.mark.parametrize("email", ["ada@example.com", "nobody@example.com"])
def test_charge_token_stores_an_operators_generation_then_confirms_its_charge(dag, fresh_app_db, tmp_path, email):
    """store_generation is folded into charge_token: for a run from the trigger form it stores and
    pays first (a refused request fails at once, with the reason, storing and charging nothing)."""
    from types import SimpleNamespace

    from airflow.sdk.execution_time.context import set_current_context
    from sqlmodel import select

    from include import ledger
    from include.models import LedgerEntry
    from include.operator_generations import generation_id_for_run
    from tests.api.support import make_user
    from tests.api.images import jpeg

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg(640, 480))
    user, _ = make_user(email="ada@example.com", tokens=1)
    run_id = "manual__2026-12-01T10:00:00+00:00"
    params = {"photo": str(photo), "prompt": "a happy cat", "email": email, "motion": "wave", "payment": "user_tokens",
              "generation_id": None, "upload_path": None}
    ti = SimpleNamespace(task_id="charge_token", try_number=1, start_date=None, log_url=None)
    context = {"dag_run": SimpleNamespace(dag_id=GENERATE_DAG_ID, run_id=run_id, conf={}), "params": params, "ti": ti}
    gid = generation_id_for_run(GENERATE_DAG_ID, run_id)
    charge = dag.get_task("charge_token").python_callable
    with set_current_context(context):
        if email == "nobody@example.com":
            with pytest.raises(AirflowFailException, match="No user has the email"):
                charge(params=params, run_id=run_id)
            with session_scope() as session:
                assert session.exec(select(LedgerEntry).where(LedgerEntry.generation_id == gid)).all() == []
            return
        assert charge(params=params, run_id=run_id) == gid
        assert charge(params=params, run_id=run_id) == gid  # a retry: stored and charged once
    assert ledger.balance(user.id) == 0
    with session_scope() as session:
        assert [e.reason for e in session.exec(select(LedgerEntry).where(LedgerEntry.generation_id == gid)).all()] == ["charge"]
