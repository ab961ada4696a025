"""``/`` (create a buddy), ``/buddies`` (my buddies) and ``/buddies/{id}`` (progress, then the result).

Creating goes through the same submission code as ``POST /api/generations``
(:func:`api.routes.generations.submit_generation`): a refused photo or prompt shows the API's
message on the form, and nothing is stored or charged. The progress page follows the
generation's event stream (``static/progress.js`` with ``EventSource``, the session cookie
authenticating it) and reloads itself into the result once the generation has ended.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response, StreamingResponse
from sqlmodel import Session, col, func, select

from api.assets import stored_chunks
from api.deps import AirflowDep, get_db
from api.embedding import embed_snippet
from api.presenters import asset_urls
from api.routes.generations import submit_generation
from api.web.core import CsrfChecked, MaybeUser, PageNotFound, PageUser, owned_or_404, redirect, render
from include import deletion, ledger, quotas, storage
from include.generations import pending_formats, share_url
from include.models import Generation, User
from include.settings import get_settings
from include.stages import DEFAULT_MOTION, MOTIONS, OPTIONAL_STAGES, STAGE_NAMES

router = APIRouter(include_in_schema=False)

SessionDep = Annotated[Session, Depends(get_db)]
PAGE_SIZE = 12
STAGE_LABELS = {
    "charge": "Token taken",
    "moderate": "Safety check",
    "review": "Waiting for review",
    "analyze": "Finding you in the photo",
    "cartoonize": "Drawing the cartoon",
    "expand_full_body": "Drawing the rest of the body",
    "segment_image": "Cutting out",
    "animate": "Animating",
    "segment_video": "Clearing the background",
    "transcode": "Making the video files",
    "publish": "Publishing",
}
MOTION_LABELS = {"bounce": "Bounce", "wave": "Wave hello", "jump": "Jump", "dance": "Dance", "sway": "Sway"}
PHOTO_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def _create_page(request: Request, user: User, status_code: int = 200, **context) -> Response:
    context.setdefault("error", None)
    context.setdefault("prompt", "")
    context.setdefault("motion", DEFAULT_MOTION)
    return render(
        request,
        "buddies/create.html",
        status_code=status_code,
        motions=[(m, MOTION_LABELS.get(m, m.title())) for m in MOTIONS],
        # A fresh key per form: a double click or a resent form makes one buddy, not two.
        submission_key=secrets.token_urlsafe(16),
        max_upload_mib=f"{get_settings().max_upload_bytes / (1024 * 1024):g}",
        cost=ledger.TOKENS_PER_GENERATION,
        **context,
    )


@router.get("/")
def create_page(request: Request, user: MaybeUser) -> Response:
    if user is None:
        return render(request, "buddies/welcome.html", signup_tokens=get_settings().signup_tokens)
    return _create_page(request, user)


@router.post("/", dependencies=[CsrfChecked])
async def create(
    request: Request,
    user: PageUser,
    airflow: AirflowDep,
    image: Annotated[UploadFile | None, File()] = None,
    prompt: Annotated[str, Form()] = "",
    motion: Annotated[str, Form()] = "",
    submission_key: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    outcome: Generation | HTTPException
    if image is None or not image.filename:
        outcome = HTTPException(422, "Choose a photo first.")
    else:
        key = f"web:{submission_key}" if submission_key else None
        try:
            outcome = await submit_generation(airflow, user, image, prompt, motion, key)
        except HTTPException as refused:
            outcome = refused
        except quotas.LimitExceeded as over:
            outcome = HTTPException(429, str(over))
    if isinstance(outcome, HTTPException):
        page = lambda: _create_page(request, user, outcome.status_code, error=outcome.detail, prompt=prompt, motion=motion)  # noqa: E731
        return await asyncio.to_thread(page)
    return redirect(request, f"/buddies/{outcome.id}")


@router.get("/buddies")
def gallery(request: Request, user: PageUser, session: SessionDep, page: int = 1) -> Response:
    mine = (Generation.user_id == user.id, Generation.deleted_at.is_(None))
    total = session.exec(select(func.count()).select_from(Generation).where(*mine)).one()
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(max(1, page), pages)
    rows = session.exec(
        select(Generation)
        .where(*mine)
        .order_by(col(Generation.created_at).desc(), col(Generation.id).desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    ).all()
    buddies = [{"g": g, "poster": asset_urls(g).get("poster")} for g in rows]
    return render(request, "buddies/gallery.html", buddies=buddies, page=page, pages=pages, total=total)


@router.get("/buddies/{generation_id}")
def buddy_page(request: Request, user: PageUser, session: SessionDep, generation_id: str) -> Response:
    return _buddy_page(request, owned_or_404(_live(session, generation_id), user))


def _live(session: Session, generation_id: str) -> Generation | None:
    """The generation unless its owner deleted it (its row stays as a tombstone for the ledger)."""
    generation = session.get(Generation, generation_id)
    return None if generation is None or generation.deleted_at is not None else generation


def _buddy_page(request: Request, generation: Generation, status_code: int = 200, delete_error: str | None = None) -> Response:
    return render(
        request,
        "buddies/detail.html",
        status_code=status_code,
        g=generation,
        assets=asset_urls(generation),
        pending=pending_formats(generation),
        share=share_url(generation),
        embed_snippet=embed_snippet(generation.slug),
        has_photo=storage.exists(generation.upload_path),
        stages=[(s, STAGE_LABELS.get(s, s.replace("_", " ").capitalize())) for s in STAGE_NAMES],
        optional_stages=OPTIONAL_STAGES,
        motion_label=MOTION_LABELS.get(generation.motion or "", None),
        delete_error=delete_error,
    )


@router.post("/buddies/{generation_id}/delete", dependencies=[CsrfChecked])
def delete_buddy(request: Request, user: PageUser, session: SessionDep, generation_id: str) -> Response:
    """Delete the buddy (include.deletion): photo, intermediates, assets; then back to the gallery."""
    generation = owned_or_404(_live(session, generation_id), user)
    try:
        deletion.delete_generation(user.id, generation.id)
    except deletion.DeletionRefused as refused:
        return _buddy_page(request, generation, status_code=409, delete_error=str(refused))
    except deletion.NotFound:
        raise PageNotFound() from None
    return redirect(request, "/buddies")


@router.get("/buddies/{generation_id}/photo")
def buddy_photo(user: PageUser, session: SessionDep, generation_id: str) -> Response:
    """The owner's original photo (the "photo" background behind the result)."""
    generation = owned_or_404(_live(session, generation_id), user)
    key = generation.upload_path
    if not storage.exists(key):
        raise HTTPException(404, "The photo is no longer stored.")

    media_type = PHOTO_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")
    return StreamingResponse(stored_chunks(key), media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})
