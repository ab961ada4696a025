"""How long BitBuddies keeps a generation's files, and removing them.

A generation's photo (``uploads/{gid}/``) and the model provider's intermediate results (the
local model server's jobs and files, or fal.ai's payloads and output files of the jobs recorded
under ``provider_jobs/{gid}/``) are needed only while it runs: they are deleted
``upload_retention_days`` after it ended. Its published assets (``generations/{gid}/``) stay
until its owner deletes it; a deleted generation loses everything (include/deletion.py).

``Generation.files_purged_at`` records that the files its state calls for are gone, so the
retention DAG (``bitbuddies_retention``) finds what is due with one query and a purge that failed
halfway (a model server that was down) is simply due again on the next run.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

import httpx
from sqlmodel import col, select

from include import storage
from include.db import session_scope
from include.generations import GENERATE_DAG_ID
from include.models import TERMINAL_STATUSES, Generation, utcnow
from include.settings import get_settings

log = logging.getLogger(__name__)

PURGE_TIMEOUT_SECONDS = 30.0


class PurgeFailed(RuntimeError):
    """The model provider's copies could not be removed (it was unreachable or refused)."""


def model_job_key_prefix(generation_id: str) -> str:
    """The start of every model job key of a generation's run (the operator's Idempotency-Key
    is ``{dag_id}:{run_id}:{task}:...`` and the run id is the generation id)."""
    return f"{GENERATE_DAG_ID}:{generation_id}:"


def purge_model_copies(*, key_prefix: str | None = None, finished_before: datetime | None = None) -> int:
    """Delete the local model server's finished jobs and their files; returns how many.

    fal.ai's copies are deleted per job (``purge_fal_copies``).
    """
    settings = get_settings()
    if settings.model_provider != "local":
        return 0
    body: dict[str, object] = {}
    if key_prefix is not None:
        body["idempotency_key_prefix"] = key_prefix
    if finished_before is not None:
        body["finished_before"] = finished_before.timestamp()
    key = settings.model_server_key.get_secret_value()
    headers = {"Authorization": f"Key {key}"} if key else {}
    try:
        response = httpx.post(f"{settings.model_server_url}/_admin/purge", json=body, headers=headers, timeout=PURGE_TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        raise PurgeFailed(f"model server unreachable: {error}") from error
    if response.status_code != 200:
        raise PurgeFailed(f"model server answered {response.status_code} to a purge")
    return int(response.json().get("purged", 0))


_FAL_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def _fal_jobs_prefix(generation_id: str) -> str:
    return f"provider_jobs/{generation_id}"


def record_fal_job(generation_id: str, request_id: str) -> None:
    """Remember that a job of this generation ran at fal.ai, so its copies there can be deleted.

    One empty object per job, named by the request id (fal knows its jobs only by that id).
    """
    if not _FAL_REQUEST_ID.match(request_id):
        raise ValueError(f"not a fal request id: {request_id!r}")
    with storage.open_write(f"{_fal_jobs_prefix(generation_id)}/{request_id}"):
        pass


def purge_fal_copies(generation_id: str) -> int:
    """Delete what fal.ai keeps of the generation's jobs: their input and output payloads and the
    output files on fal's CDN (``DELETE {fal_platform_url}/models/requests/{id}/payloads``, admin
    key). Returns how many jobs; a job's record goes once fal confirmed (or no longer knows it).

    Without an admin key nothing can be deleted at fal: the records go with a warning (fal's CDN
    files still expire through the lifetime sent with each job, its payloads after fal's own 30 days).
    """
    settings = get_settings()
    keys = storage.list_keys(_fal_jobs_prefix(generation_id))
    if not keys:
        return 0
    admin_key = settings.fal_admin_key.get_secret_value()
    if not admin_key:
        log.warning("generation %s: no BITBUDDIES_FAL_ADMIN_KEY, fal keeps %d job(s) until they expire", generation_id, len(keys))
        storage.delete_tree(_fal_jobs_prefix(generation_id))
        return 0
    base = settings.fal_platform_url.rstrip("/")
    for key in keys:
        request_id = key.rsplit("/", 1)[-1]
        try:
            response = httpx.delete(
                f"{base}/models/requests/{request_id}/payloads",
                headers={"Authorization": f"Key {admin_key}", "Idempotency-Key": f"purge:{request_id}"},
                timeout=PURGE_TIMEOUT_SECONDS,
            )
        except httpx.HTTPError as error:
            raise PurgeFailed(f"fal unreachable: {error}") from error
        if response.status_code not in (200, 204, 404):
            raise PurgeFailed(f"fal answered {response.status_code} to deleting request {request_id}")
        failed_files = [r for r in (response.json().get("cdn_delete_results") or []) if r.get("exception")] if response.status_code == 200 else []
        if failed_files:
            raise PurgeFailed(f"fal could not delete {len(failed_files)} file(s) of request {request_id}")
        storage.delete(key)
    return len(keys)


def purge_generation_files(generation_id: str, *, assets: bool) -> None:
    """Remove the generation's photo and intermediates, and its published assets when ``assets``.

    Raises ``PurgeFailed`` when the model provider's copies could not be removed; the storage
    part is done by then and a repeat is harmless.
    """
    storage.delete_tree(f"uploads/{generation_id}")
    if assets:
        storage.delete_tree(f"generations/{generation_id}")
    purge_fal_copies(generation_id)
    purge_model_copies(key_prefix=model_job_key_prefix(generation_id))


def mark_purged(generation_id: str) -> None:
    with session_scope(write_lock=True) as session:
        generation = session.get(Generation, generation_id)
        if generation is not None and generation.files_purged_at is None:
            generation.files_purged_at = utcnow()
            session.add(generation)


def retention_cutoff(now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(days=get_settings().upload_retention_days)


def due_for_purge(now: datetime | None = None, limit: int = 500) -> list[tuple[str, bool]]:
    """(generation id, whether it is deleted) of every generation whose files are due, oldest first:
    deleted ones, and finished ones that ended before the retention cutoff."""
    cutoff = retention_cutoff(now)
    with session_scope() as session:
        rows = session.exec(
            select(Generation.id, Generation.deleted_at)
            .where(
                Generation.files_purged_at.is_(None),
                Generation.deleted_at.is_not(None)
                | (col(Generation.status).in_(TERMINAL_STATUSES) & (Generation.finished_at < cutoff)),
            )
            .order_by(Generation.created_at)
            .limit(limit)
        ).all()
    return [(gid, deleted_at is not None) for gid, deleted_at in rows]


def purge_due(now: datetime | None = None) -> dict[str, int]:
    """One retention pass: purge every generation due, then the model server's older leftovers.

    Returns counts; raises ``PurgeFailed`` after the pass when any model-server purge failed
    (those generations stay due), so the DAG's task fails visibly and retries.
    """
    purged = failed = 0
    for generation_id, deleted in due_for_purge(now):
        try:
            purge_generation_files(generation_id, assets=deleted)
        except PurgeFailed as error:
            log.warning("generation %s: %s; it stays due", generation_id, error)
            failed += 1
            continue
        mark_purged(generation_id)
        purged += 1
    # Jobs that belong to no generation row (removed, or submitted from elsewhere) expire too.
    leftovers = purge_model_copies(finished_before=retention_cutoff(now))
    if failed:
        raise PurgeFailed(f"{failed} generation(s) could not be purged at the model server")
    return {"generations": purged, "model_jobs": leftovers}
