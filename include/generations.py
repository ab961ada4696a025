"""A generation's lifecycle in the application DB, as the pipeline reports it.

Airflow tasks call these (no Airflow imports here): ``mark_stage`` as each stage starts,
``mark_succeeded`` when publishing, ``mark_failed`` when the run fails for good. The API
reads the same rows. ``OUTBOX`` starts the DAG run of every stored generation exactly once
(the generation id is the dag_run_id; ``include/outbox.py``).

Terminal states are final: a late or repeated call never turns a succeeded generation
into a failed one, never revives a failed one, and the first error is the one users see.
"""

from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import quote

from sqlalchemy import func
from sqlmodel import col, select

from include.db import session_scope
from include.models import TERMINAL_STATUSES, Generation, GenerationEvent, utcnow
from include.outbox import DagRunOutbox
from include.settings import get_settings
from include.user_messages import presentable

log = logging.getLogger(__name__)

GENERATE_DAG_ID = "bitbuddies_generate"


def share_url(generation: Generation) -> str:
    """The buddy's public share page (``/b/{slug}``): what its sticker's QR code opens."""
    return f"{get_settings().public_base_url.rstrip('/')}/b/{generation.slug}"

# Asset kind (the key in Generation.assets) -> the file name used in download URLs.
# The walk loop (walk_webm, walk_webp) is optional: only generations whose pipeline made one
# have it; the embed widget then walks with it and otherwise moves the idle loop across the page.
ASSET_FILES = {
    "webm": "buddy.webm",
    "webp": "buddy.webp",
    "gif": "buddy.gif",
    "poster": "poster.png",
    # The walk loop every buddy also gets (the embed widget walks it across a page).
    "walk_webm": "walk.webm",
    "walk_webp": "walk.webp",
}


class GenerationNotFound(LookupError):
    pass


def airflow_run_url(generation: Generation | str) -> str:
    """The generation's DAG run in the Airflow UI (Airflow 3's route ``/dags/{dag_id}/runs/{run_id}``):
    its own id as run id when the API started it, the form run's id when an operator did."""
    run_id = generation if isinstance(generation, str) else (generation.airflow_run_id or generation.id)
    return f"{get_settings().resolved_airflow_public_url}/dags/{GENERATE_DAG_ID}/runs/{quote(run_id, safe='')}"


def upload_key(generation_id: str, extension: str = "jpg") -> str:
    return f"uploads/{generation_id}/photo.{extension}"


def asset_key(generation_id: str, kind: str) -> str:
    """Where the pipeline stores an asset, e.g. ``generations/{gid}/buddy.webm``."""
    return f"generations/{generation_id}/{ASSET_FILES[kind]}"


def get(gid: str) -> Generation:
    with session_scope() as session:
        generation = session.get(Generation, gid)
    if generation is None:
        raise GenerationNotFound(f"no generation {gid}")
    return generation


def exists(gid: str) -> bool:
    with session_scope() as session:
        return session.get(Generation, gid) is not None


def mark_stage(gid: str, stage: str) -> Generation:
    """Record that ``stage`` started; the generation is running (unless already finished)."""
    with session_scope(write_lock=True) as session:
        generation = load_for_update(session, gid)
        if generation.status in TERMINAL_STATUSES:
            log.warning("generation %s is %s; ignoring stage %s", gid, generation.status, stage)
            return generation
        generation.status = "running"
        generation.stage = stage
        generation.updated_at = utcnow()
        session.add(generation)
        return generation


def mark_succeeded(gid: str, assets: dict[str, str], pending: tuple[str, ...] | list[str] = ()) -> Generation:
    """Publish: the generation succeeded with ``assets`` (kind -> storage key).

    ``pending`` are the kinds still being encoded (the fallback formats, which follow the WebM and
    the poster): they are kept as ``None`` until ``add_assets`` stores them, so the API can say
    which formats are ready and which are coming.
    """
    unknown = (set(assets) | set(pending)) - set(ASSET_FILES)
    if unknown:
        raise ValueError(f"unknown asset kinds {sorted(unknown)}; expected {sorted(ASSET_FILES)}")
    with session_scope(write_lock=True) as session:
        generation = load_for_update(session, gid)
        if generation.status == "failed":
            log.warning("generation %s already failed (%s); not marking it succeeded", gid, generation.error)
            return generation
        now = utcnow()
        generation.status = "succeeded"
        generation.stage = "publish"
        ready = {kind: key for kind, key in (generation.assets or {}).items() if key}
        generation.assets = {kind: None for kind in pending if kind not in ready and kind not in assets} | ready | dict(assets)
        generation.updated_at = now
        generation.finished_at = generation.finished_at or now
        session.add(generation)
        return generation


def add_assets(gid: str, assets: dict[str, str]) -> Generation:
    """Store formats encoded beside the ones that publish the generation (kind -> storage key).

    A published generation shows them at once; one still running keeps them for publishing, which
    then lists them as ready, not pending. A failed or deleted one does not take them (none to show).
    """
    unknown = set(assets) - set(ASSET_FILES)
    if unknown:
        raise ValueError(f"unknown asset kinds {sorted(unknown)}; expected {sorted(ASSET_FILES)}")
    with session_scope(write_lock=True) as session:
        generation = load_for_update(session, gid)
        if generation.status == "failed" or generation.deleted_at is not None:
            log.warning("generation %s is %s; not adding formats %s", gid, generation.status, sorted(assets))
            return generation
        generation.assets = dict(generation.assets or {}) | dict(assets)
        generation.updated_at = utcnow()
        session.add(generation)
        return generation


def drop_pending_assets(gid: str) -> Generation:
    """The fallback formats will not come (their encode failed for good): stop announcing them."""
    with session_scope(write_lock=True) as session:
        generation = load_for_update(session, gid)
        assets = {kind: key for kind, key in (generation.assets or {}).items() if key}
        if assets != generation.assets:
            generation.assets = assets
            generation.updated_at = utcnow()
            session.add(generation)
        return generation


def ready_formats(generation: Generation) -> list[str]:
    """The asset kinds a succeeded generation can be downloaded in now, in ``ASSET_FILES`` order."""
    assets = generation.assets or {}
    return [kind for kind in ASSET_FILES if assets.get(kind)] if generation.status == "succeeded" else []


def pending_formats(generation: Generation) -> list[str]:
    """The asset kinds still being encoded after the generation was published."""
    assets = generation.assets or {}
    return [kind for kind in ASSET_FILES if kind in assets and not assets[kind]] if generation.status == "succeeded" else []


def mark_failed(gid: str, error: str, failed_task: str | None = None) -> Generation:
    """The generation failed for good with a user-facing ``error``; the first error wins.

    The pipeline ends a generation through ``include.settlement``, which also refunds it in the
    same transaction; this alone is for a generation that was never charged.
    """
    with session_scope(write_lock=True) as session:
        generation = load_for_update(session, gid)
        end_failed(generation, error, failed_task)
        session.add(generation)
        return generation


def end_failed(generation: Generation, error: str, failed_task: str | None) -> bool:
    """Set ``generation`` failed in the caller's transaction (row locked); False when it had
    already ended (terminal states are final)."""
    if generation.status in TERMINAL_STATUSES:
        log.info("generation %s is already %s; keeping it", generation.id, generation.status)
        return False
    now = utcnow()
    generation.status = "failed"
    # An error recorded earlier by the failing task itself is more precise than a later summary.
    generation.error = generation.error or presentable(error)
    generation.failed_task = generation.failed_task or failed_task
    generation.updated_at = now
    generation.finished_at = now
    return True


def record_error(gid: str, error: str, failed_task: str | None = None) -> Generation:
    """Note the first user-facing error of a generation still in progress, without ending it.

    The status turns ``failed`` only when the generation is settled (``include.settlement``: failed
    and refunded in one transaction), so a user never sees a failed generation whose refund state
    is not yet known.
    """
    with session_scope(write_lock=True) as session:
        generation = load_for_update(session, gid)
        if generation.status in TERMINAL_STATUSES or generation.error:
            return generation
        generation.error = presentable(error)
        generation.failed_task = failed_task
        generation.updated_at = utcnow()
        session.add(generation)
        return generation


def stalled(no_progress_since: datetime) -> list[tuple[Generation, datetime]]:
    """Unfinished generations whose last sign of progress (created, a stage started, a progress
    event such as a queue position or a retry) is older than ``no_progress_since``, with it."""
    with session_scope() as session:
        last_event = dict(
            session.exec(
                select(GenerationEvent.generation_id, func.max(GenerationEvent.created_at))
                .join(Generation, col(Generation.id) == col(GenerationEvent.generation_id))
                .where(col(Generation.status).not_in(TERMINAL_STATUSES))
                .group_by(GenerationEvent.generation_id)
            ).all()
        )
        unfinished = session.exec(select(Generation).where(col(Generation.status).not_in(TERMINAL_STATUSES))).all()
    found = []
    for generation in unfinished:
        signs = [generation.created_at, generation.updated_at, last_event.get(generation.id)]
        last = max(t for t in signs if t is not None)
        if last < no_progress_since:
            found.append((generation, last))
    return found


def load_for_update(session, gid: str) -> Generation:
    """The generation, its row locked for the rest of the transaction (Postgres ``FOR UPDATE``;
    SQLite's write lock is the whole database), so a late publish and a settlement cannot both
    win: the second waits, then sees the first one's terminal state."""
    generation = session.get(Generation, gid, with_for_update=True, populate_existing=True)
    if generation is None:
        raise GenerationNotFound(f"no generation {gid}")
    return generation


def dag_run_conf(generation: Generation) -> dict[str, object]:
    """The generation DAG's params for ``generation``."""
    return {
        "generation_id": generation.id,
        "user_id": generation.user_id,
        "prompt": generation.prompt,
        "motion": generation.motion,  # None: read from the prompt
        "upload_path": generation.upload_path,
    }


# Stored and charged by the API (ledger.create_paid_generation), then started here.
OUTBOX = DagRunOutbox(what="generation", table=Generation, ready=lambda: Generation.status == "queued",
                      dag_id=GENERATE_DAG_ID, conf=dag_run_conf)
