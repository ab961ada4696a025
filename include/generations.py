"""A generation's lifecycle in the application DB, as the pipeline reports it.

Airflow tasks call these (no Airflow imports here): ``mark_stage`` as each stage starts,
``mark_succeeded`` when publishing, ``mark_failed`` when the run fails for good. The API
reads the same rows. The API's trigger loop uses ``pending_triggers`` / ``mark_triggered``
to start a DAG run for every generation exactly once (the generation id is the dag_run_id).

Terminal states are final: a late or repeated call never turns a succeeded generation
into a failed one, never revives a failed one, and the first error is the one users see.
"""

from __future__ import annotations

import logging

from sqlmodel import select

from include.db import session_scope
from include.models import TERMINAL_STATUSES, Generation, utcnow
from include.settings import get_settings
from include.user_messages import presentable

log = logging.getLogger(__name__)

GENERATE_DAG_ID = "bitbuddies_generate"


def share_url(generation: Generation) -> str:
    """The buddy's public share page (``/b/{slug}``): what its sticker's QR code opens."""
    return f"{get_settings().public_base_url.rstrip('/')}/b/{generation.slug}"

# The stages the generation DAG reports through mark_stage, in order (for progress
# displays). expand_full_body only runs when the subject is cut off.
STAGES = (
    "charge",
    "moderate",
    "analyze",
    "cartoonize",
    "expand_full_body",
    "segment_image",
    "animate",
    "segment_video",
    "transcode",
    "publish",
)

# Asset kind (the key in Generation.assets) -> the file name used in download URLs.
ASSET_FILES = {
    "webm": "buddy.webm",
    "webp": "buddy.webp",
    "gif": "buddy.gif",
    "poster": "poster.png",
}


class GenerationNotFound(LookupError):
    pass


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


def mark_stage(gid: str, stage: str) -> Generation:
    """Record that ``stage`` started; the generation is running (unless already finished)."""
    with session_scope(write_lock=True) as session:
        generation = _load(session, gid)
        if generation.status in TERMINAL_STATUSES:
            log.warning("generation %s is %s; ignoring stage %s", gid, generation.status, stage)
            return generation
        generation.status = "running"
        generation.stage = stage
        generation.updated_at = utcnow()
        session.add(generation)
        return generation


def mark_succeeded(gid: str, assets: dict[str, str]) -> Generation:
    """Publish: the generation succeeded with ``assets`` (kind -> storage key)."""
    unknown = set(assets) - set(ASSET_FILES)
    if unknown:
        raise ValueError(f"unknown asset kinds {sorted(unknown)}; expected {sorted(ASSET_FILES)}")
    with session_scope(write_lock=True) as session:
        generation = _load(session, gid)
        if generation.status == "failed":
            log.warning("generation %s already failed (%s); not marking it succeeded", gid, generation.error)
            return generation
        now = utcnow()
        generation.status = "succeeded"
        generation.stage = "publish"
        generation.assets = dict(assets)
        generation.updated_at = now
        generation.finished_at = generation.finished_at or now
        session.add(generation)
        return generation


def mark_failed(gid: str, error: str, failed_task: str | None = None) -> Generation:
    """The generation failed for good with a user-facing ``error``; the first error wins."""
    with session_scope(write_lock=True) as session:
        generation = _load(session, gid)
        if generation.status in TERMINAL_STATUSES:
            log.info("generation %s is already %s; keeping it", gid, generation.status)
            return generation
        now = utcnow()
        generation.status = "failed"
        # An error recorded earlier by the failing task itself is more precise than a later summary.
        generation.error = generation.error or presentable(error)
        generation.failed_task = generation.failed_task or failed_task
        generation.updated_at = now
        generation.finished_at = now
        session.add(generation)
        return generation


def record_error(gid: str, error: str, failed_task: str | None = None) -> Generation:
    """Note the first user-facing error of a generation still in progress, without ending it.

    The status turns ``failed`` only with :func:`mark_failed`, once the refund is settled, so a
    user never sees a failed generation whose refund state is not yet known.
    """
    with session_scope(write_lock=True) as session:
        generation = _load(session, gid)
        if generation.status in TERMINAL_STATUSES or generation.error:
            return generation
        generation.error = presentable(error)
        generation.failed_task = failed_task
        generation.updated_at = utcnow()
        session.add(generation)
        return generation


def pending_triggers() -> list[Generation]:
    """Queued generations whose DAG run has not been triggered yet, oldest first."""
    with session_scope() as session:
        return list(
            session.exec(
                select(Generation)
                .where(Generation.status == "queued", Generation.triggered_at.is_(None))
                .order_by(Generation.created_at)
            ).all()
        )


def mark_triggered(gid: str) -> Generation:
    """Record that the DAG run exists (keeps the first trigger time)."""
    with session_scope(write_lock=True) as session:
        generation = _load(session, gid)
        if generation.triggered_at is None:
            generation.triggered_at = utcnow()
            generation.updated_at = generation.triggered_at
            session.add(generation)
        return generation


def _load(session, gid: str) -> Generation:
    generation = session.get(Generation, gid)
    if generation is None:
        raise GenerationNotFound(f"no generation {gid}")
    return generation
