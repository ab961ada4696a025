"""
# Generate a Bit Buddy

One run per generation: a photo and a prompt in, an animated, transparent cartoon buddy out.
The web API triggers it with `dag_run_id` = the generation id. An operator starts one from the
UI's trigger form: a photo (URL or a file on the server), a prompt, a motion, the user's email and
who pays (the user's tokens, or an operator grant the ledger records as such);
`charge_token` then first stores and pays for the generation as the API would
(`include/operator_generations.py`). Runs the API started pass `generation_id` and skip that.

**Pipeline.** `charge_token` (storing the generation first for an operator's run) confirms the
token is paid (the API took it with the generation; the task finds that charge under the same
ledger key, and takes it only for a run started from the UI without one), then every model stage is one
`ModelJobOperator` (submit -> deferrable wait -> fetch, never submitted twice):
`moderate` and `analyze` side by side on the photo (its provider URL is rendered into their
inputs: `photo_url` macro) -> (`review` when the photo's safety score is borderline: an operator
approves it under "Required actions"; skipped by `moderate` for every other photo) ->
`cartoonize` once both passed -> (`expand_full_body` when the
subject is cut off: `analyze` skips it for a whole one, from inside its own task) ->
`segment_image` -> `animate` -> `segment_video`; then `transcode` encodes what the user sees
first, the WebM (VP9 + alpha) and the poster, into object storage and publishes the buddy (the
product's **publish** step, at the end of the same task: no task process of its own on every
buddy's path). `encode_fallbacks` makes the animated WebP, the GIF and the walk loop (WebM and
WebP) at the same time, its encoders at a lower CPU priority, so they take what `transcode` leaves
of the cores and never slow the buddy down; they are listed in `formats_pending` from publishing
until they are stored, and `refund_token` stops announcing any the run did not make.

**Deadline.** A run not finished `deadline_alert_minutes` (default: `generation_deadline_minutes`)
after it was queued raises Airflow's `DeadlineAlert`: the operator is alerted once (`plugins/bitbuddies_airflow/deadlines.py`), and the
reconciliation DAG fails and refunds the generation as it does every stuck one.

**Failure.** Business errors (NSFW photo, no usable subject, a photo rejected by review or not
reviewed within `review_timeout`) fail at once, without retries.
`refund_token` is a teardown that runs once everything else is done: if the generation did not
succeed it settles it: failed and its token given back, in one transaction (`include/settlement.py`,
idempotent ledger key). Being a
teardown it does not decide the run's state, so a failed generation's run still ends *failed*.

**Pools.** `model_local` caps jobs in flight at the model provider (deferred tasks count);
`media_cpu` caps concurrent ffmpeg encodes. **Queues.** `transcode` and `encode_fallbacks` run on
the `media` queue (its own Celery workers in production); everything else on `default`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
from airflow.sdk.exceptions import AirflowFailException

from bitbuddies_airflow.dag_defaults import DB_TIMEOUT, DOWNLOAD_TIMEOUT, ENCODE_TIMEOUT, OWNER, owner_links
from bitbuddies_airflow.deadlines import alert_overdue_generation
from bitbuddies_airflow.notifiers import GenerationFailedNotifier
from bitbuddies_airflow.operators import AnalyzeOperator, ModelJobOperator
from bitbuddies_airflow.refunds import refuse_finished_generation, refuse_unless_formats_pending
from bitbuddies_airflow.review import ModerateOperator, PhotoReviewOperator
from bitbuddies_airflow.runs import generation_id, started_by_operator
from bitbuddies_airflow.reporting import inner_stage, record_failure, report_outcome, report_retry, report_stage, report_stage_finished
from bitbuddies_airflow.storage import open_for_write, provider_url
from include import generations, ledger, operator_generations
from include.settlement import settle_failed_generation
from include.settings import get_settings
from include.stages import MEDIA_POOL, MODEL_STAGES, MOTIONS, model_pool

# One pool per model provider (config/pools.json): the provider in use is configuration. The
# stages, their waits and pools are declared in include/stages.py.
MODEL_POOL = model_pool(get_settings().model_provider)
# CPU-heavy media work runs on the workers that consume this queue (CeleryExecutor); the
# LocalExecutor ignores queues.
MEDIA_QUEUE = "media"
# The fallback formats' encoders run at this niceness: on shared cores the buddy's own encode (and
# the model stages of other generations) go first, the fallbacks take what is left.
FALLBACK_NICE = 10
default_args = {
    "owner": OWNER,
    "retries": 3,
    "retry_delay": timedelta(seconds=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=2),
    "on_execute_callback": report_stage,
    "on_failure_callback": record_failure,
    # Live progress for the user (include/event_publisher.py); the outcome's event and alert are report_outcome.
    "on_success_callback": report_stage_finished,
    "on_retry_callback": report_retry,
    # A finished generation is never worked on (or paid for) again, e.g. after a UI clear.
    "pre_execute": refuse_finished_generation,
}


# The trigger form. Every param has a valid default, so the form can be submitted (Airflow's UI
# keeps Trigger disabled while the form does not validate); the schema refuses bad values in the
# form itself. The API's runs pass generation_id, user_id and upload_path.
_API_SECTION = "Started by the API (leave empty to start a new buddy)"
PARAMS = {
    "photo": Param(
        None, type=["null", "string"], pattern=r"^(https?://\S+|/\S.*)$", title="Photo",
        description="The photo: an http(s) URL, or the absolute path of a file on the server.",
    ),
    "prompt": Param(
        "bounce happily", type="string", minLength=1, maxLength=500, title="Prompt",
        description="What the buddy should be like (1-500 characters).",
    ),
    # The motion chosen in the web app; none: the animate stage reads it from the prompt. (Null,
    # not "": the UI counts an empty string as a missing value.)
    "motion": Param(
        None, type=["null", "string"], enum=[None, *MOTIONS], title="Motion",
        values_display={"None": "read it from the prompt", **{m: m for m in MOTIONS}},
    ),
    "email": Param(
        None, type=["null", "string"], pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", maxLength=320, title="User's email",
        description="The user the buddy is for.",
    ),
    "payment": Param(
        "user_tokens", type="string", enum=list(operator_generations.PAYMENTS), title="Who pays",
        values_display={"user_tokens": "one of the user's tokens", "operator_grant": "an operator grant (recorded in the ledger)"},
    ),
    "generation_id": Param(
        None, type=["null", "string"], pattern="^[0-9a-f]{32}$", section=_API_SECTION,
        description="Generation id (from the API)",
    ),
    "user_id": Param(None, type=["null", "integer"], minimum=1, section=_API_SECTION, description="Owner of the generation"),
    "upload_path": Param(
        None, type=["null", "string"], minLength=1, section=_API_SECTION, description="Storage key of the uploaded photo",
    ),
}


def pending_after_publish(video: dict) -> list[str]:
    """The formats encode_fallbacks adds once the buddy is published (the walk loop when made)."""
    from include.media.transcode import FALLBACK_FORMATS, WALK_FORMATS

    walk = [f"walk_{fmt}" for fmt in WALK_FORMATS] if video.get("walk_video") else []
    return [*FALLBACK_FORMATS, *walk]


def drop_pending_formats(context) -> None:
    """The fallbacks failed for good: the buddy stays published with what it has."""
    gid = generation_id(context)
    if gid:
        generations.drop_pending_assets(gid)


def photo_url(upload_path: str | None, dag_run) -> str:
    """The photo's URL for the model provider: the API's upload (in the run's conf), else the one
    stored for the run (by charge_token, for a run from the trigger form)."""
    return provider_url(upload_path or generations.get(generation_id({"dag_run": dag_run})).upload_path)


def store_operator_generation(gid: str, params: dict, run_id: str) -> None:
    """A run from the trigger form: store and pay for its generation as the API would (once; a
    retry finds it stored). A refused request fails the run at once, with the reason."""
    request = operator_generations.OperatorRequest(
        photo=params["photo"] or "", prompt=params["prompt"], email=params["email"] or "",
        motion=params["motion"], payment=params["payment"],
    )
    try:
        stored = operator_generations.store(gid, request, run_id=run_id)
    except operator_generations.OperatorRequestRefused as exc:
        raise AirflowFailException(str(exc)) from None
    print(f"generation {gid} stored for user {stored.user_id} ({params['payment']})")
    # This task's pre_execute and on_execute_callback found nothing before the generation existed:
    # its stage is recorded and reported now.
    context = get_current_context()
    refuse_finished_generation(context)
    report_stage(context)


@dag(
    dag_id=generations.GENERATE_DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=64,
    default_args=default_args,
    owner_links=owner_links(),
    # Refund and alert when the run fails (at most once in Airflow: refund_token guarantees it).
    on_failure_callback=GenerationFailedNotifier(),
    # A run not finished this long after it was queued alerts the operator (in the triggerer); the
    # reconciliation DAG fails and refunds it past generation_deadline_minutes (the alert's default).
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=get_settings().resolved_deadline_alert_minutes),
        callback=AsyncCallback(alert_overdue_generation),
    ),
    tags=["bitbuddies", "generation"],
    doc_md=__doc__,
    # The photo's URL for the model provider, rendered in the task that submits it (no task of its own).
    user_defined_macros={"photo_url": photo_url},
    params=PARAMS,
)
def bitbuddies_generate():
    # One task (one task process on every run's critical path) stores an operator's generation and
    # confirms the charge. Both steps are idempotent (the store is keyed by the run, the charge by
    # the ledger key), so retries are safe; the timeout allows for downloading an operator's photo.
    # Its callbacks and pre_execute skip an operator's run whose generation is not stored yet.
    @task(retries=5, execution_timeout=DOWNLOAD_TIMEOUT)
    def charge_token(params=None, run_id=None) -> str:
        """A run from the trigger form stores (and pays for) its generation here first; then the
        generation's token is confirmed paid: the ledger's charge under the generation's key (taken
        here only for a run from the trigger form without one). Returns the generation id."""
        gid = generation_id()
        if started_by_operator():
            store_operator_generation(gid, params, run_id)
        # The API charged attempt 1 when it stored the generation: this returns that entry.
        entry = ledger.charge_generation(gid)
        print(f"generation {gid}: charge {entry.id} confirmed")
        return gid

    def model_stage(stage: str, operator=ModelJobOperator, **inputs) -> ModelJobOperator:
        return operator(
            task_id=stage, stage=stage, inputs=inputs, pool=MODEL_POOL, **MODEL_STAGES[stage].waits.operator_kwargs(),
            **stage_options.get(stage, {}),
        )

    # A flagged photo fails moderate; a borderline one waits for an operator in `review`. A subject
    # that is not cut off skips `expand_full_body` (analyze decides: no branch task of its own).
    stage_options = {"moderate": {"review_task_id": "review"}, "analyze": {"expand_task_id": "expand_full_body"}}
    prompt = "{{ params.prompt }}"

    charge = charge_token()
    photo = "{{ photo_url(params.upload_path, dag_run) }}"
    moderate = model_stage("moderate", operator=ModerateOperator, image_url=photo)
    review = PhotoReviewOperator(task_id="review", moderate_task_id="moderate", photo_url=photo, prompt=prompt)
    analyze = model_stage("analyze", operator=AnalyzeOperator, image_url=photo)
    cartoonize = model_stage("cartoonize", image_url=analyze.output["image_url"], prompt=prompt)
    # `review` is skipped for every photo that is not borderline.
    cartoonize.trigger_rule = "none_failed_min_one_success"

    expand = model_stage("expand_full_body", image_url=cartoonize.output["image_url"], prompt=prompt)
    segment_image = model_stage(
        "segment_image",
        image_url="{{ ti.xcom_pull(task_ids='expand_full_body', key='image_url') "
        "or ti.xcom_pull(task_ids='cartoonize', key='image_url') }}",
    )
    segment_image.trigger_rule = "none_failed_min_one_success"
    animate = model_stage("animate", image_url=segment_image.output["image_url"], prompt=prompt, motion="{{ params.motion or '' }}")
    segment_video = model_stage(
        "segment_video",
        video_url=animate.output["video_url"],
        key_color="{{ ti.xcom_pull(task_ids='animate')['key_color'] }}",
        # The walk loop, when the provider made one (the local models do for every buddy).
        walk_video_url="{{ (ti.xcom_pull(task_ids='animate').get('walk_video') or {}).get('url', '') }}",
    )

    def encode(video_url: str, fps: int, prefix: str, formats, names) -> dict[str, str]:
        from include.media.transcode import transcode as encode_formats

        assets = encode_formats(video_url, lambda name: open_for_write(f"{prefix}/{name}"), fps=fps, formats=formats, names=names)
        return {fmt: f"{prefix}/{asset.name}" for fmt, asset in assets.items()}

    # Publishing ends this task: its success callback sends the outcome's event.
    # Ahead of encode_fallbacks (of any run) when both wait for a media slot: the buddy first.
    @task(pool=MEDIA_POOL, queue=MEDIA_QUEUE, execution_timeout=ENCODE_TIMEOUT, on_success_callback=report_outcome,
          priority_weight=10)
    def transcode(video: dict, params=None) -> dict[str, str]:
        """What the user sees first: the WebM with alpha and the poster; then the buddy is published
        (the generation succeeds) with its fallback formats listed as pending."""
        from include.media.transcode import FIRST_FORMATS, OUTPUT_NAMES

        gid = generation_id()
        prefix = f"generations/{gid}"
        assets = encode(video["video"]["url"], int(video.get("fps") or 24), prefix, FIRST_FORMATS, OUTPUT_NAMES)
        with inner_stage(get_current_context(), "publish"):
            generations.mark_succeeded(gid, assets, pending=pending_after_publish(video))
        return assets

    @task(
        pool=MEDIA_POOL, queue=MEDIA_QUEUE, execution_timeout=ENCODE_TIMEOUT, on_execute_callback=None, on_success_callback=None,
        on_failure_callback=drop_pending_formats, pre_execute=refuse_unless_formats_pending,
    )
    def encode_fallbacks(video: dict, params=None) -> None:
        """Beside transcode: the animated WebP and the GIF, and the walk loop when there is one (the
        four encodes share the task's two encoders, slowest first, niced below transcode's). Stored
        on the generation whether or not it is published yet: publishing keeps them."""
        from include.media.transcode import FALLBACK_FORMATS, OUTPUT_NAMES, WALK_FORMATS, WALK_OUTPUT_NAMES, Clip, transcode_clips

        prefix = f"generations/{generation_id()}"
        clips = [Clip(video["video"]["url"], FALLBACK_FORMATS, OUTPUT_NAMES)]
        if video.get("walk_video"):
            clips.append(Clip(video["walk_video"]["url"], WALK_FORMATS, WALK_OUTPUT_NAMES, key_prefix="walk_"))
        assets = transcode_clips(clips, lambda name: open_for_write(f"{prefix}/{name}"), fps=int(video.get("fps") or 24),
                                 nice=FALLBACK_NICE)
        generations.add_assets(generation_id(), {key: f"{prefix}/{asset.name}" for key, asset in assets.items()})

    @task(retries=8, execution_timeout=DB_TIMEOUT, on_execute_callback=None, on_failure_callback=None, on_retry_callback=None, on_success_callback=report_outcome, pre_execute=None)
    def refund_token(params=None) -> None:
        """Compensation, after every other task is done: a generation that did not succeed gets its token back.

        A teardown, so it never decides the run's state: `transcode` publishes, and a failed run stays failed.
        The ledger key makes it idempotent across retries, re-runs and the reconciliation DAG.
        """
        gid = generation_id()
        if not generations.exists(gid):
            print(f"{gid}: never stored (the trigger form's request was refused): nothing to refund")
            return
        refunded = settle_failed_generation(gid)
        print(f"{gid}: {'refunded and failed' if refunded else 'succeeded or never charged: nothing to refund'}")
        # The run is over: a format still announced will not come (its encode failed before publishing).
        generations.drop_pending_assets(gid)

    published = transcode(segment_video.output)
    charge >> [moderate, analyze]
    moderate >> review >> cartoonize
    moderate >> cartoonize
    # analyze skips expand (a direct downstream) for a whole subject; segment_image takes the
    # expanded cartoon when there is one, else the cartoon.
    [analyze, cartoonize] >> expand >> segment_image
    cartoonize >> segment_image
    # Side by side with transcode: the formats that follow the buddy are ready a few seconds sooner.
    fallbacks = encode_fallbacks(segment_video.output)
    every_task = [charge, moderate, review, analyze, cartoonize, expand, segment_image, animate, segment_video, published, fallbacks]
    every_task >> refund_token().as_teardown()


bitbuddies_generate()
