"""``/api/generations``: submit a photo, follow a generation, download its assets."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, HTTPException, Request, UploadFile, status
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from api import uploads
from api.assets import stream_asset
from api.deps import AirflowDep, BrowserOrApiUser, CurrentUser, SessionDep, api_key_scheme, authenticate
from api.presenters import generation_public
from api.triggering import trigger_generation
from include import ledger, storage
from include.airflow_client import AirflowClient
from include.db import get_engine
from include.generations import upload_key
from include.models import Generation, GenerationPublic, GenerationsPublic, User, new_generation_id
from include.settings import get_settings
from model_server.vision.prompt import MOTIONS

log = logging.getLogger(__name__)

router = APIRouter(prefix="/generations", tags=["generations"])


def _owned_generation(session: Session, user: User, generation_id: str) -> Generation:
    generation = session.get(Generation, generation_id)
    # Someone else's generation is reported exactly like a missing one.
    if generation is None or generation.user_id != user.id:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Generation not found.")
    return generation


def _by_idempotency_key(session: Session, user: User, key: str) -> Generation | None:
    return session.exec(
        select(Generation).where(Generation.user_id == user.id, Generation.idempotency_key == key)
    ).first()


def _no_tokens(available: int) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_402_PAYMENT_REQUIRED,
        detail=f"No tokens left: a buddy costs {ledger.TOKENS_PER_GENERATION} token and your balance is {available}.",
    )


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=GenerationPublic)
async def create_generation(
    request: Request,
    airflow: AirflowDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)],
    image: Annotated[UploadFile, File(description="The photo: JPEG, PNG or WebP")],
    prompt: Annotated[str, Form(description="What the buddy should be like (1-500 characters)")] = "",
    motion: Annotated[str, Form(description=f"One of {', '.join(MOTIONS)}; empty: read from the prompt")] = "",
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=255, description="Same key, same generation")
    ] = None,
) -> GenerationPublic:
    """Validate the upload, check the balance, store the photo and start the pipeline.

    Nothing is stored or charged unless the photo and prompt are valid. The token is taken here,
    in the transaction that stores the generation (``ledger.create_paid_generation``); the
    pipeline's ``charge_token`` task then finds that charge under the same ledger key.
    """
    # All blocking work in one thread hop: sync dependencies would each take a hop through the
    # event loop, which is slow when the loop is busy streaming progress to many subscribers.
    declared_size = request.headers.get("content-length")

    def authenticated_submit() -> Generation:
        with Session(get_engine(), expire_on_commit=False) as session:
            user = authenticate(session, credentials)
        return submit_generation(airflow, user, image, prompt, motion, idempotency_key, declared_size)

    return generation_public(await asyncio.to_thread(authenticated_submit))


def submit_generation(
    airflow: AirflowClient,
    user: User,
    image: UploadFile,
    prompt: str,
    motion: str,
    idempotency_key: str | None,
    declared_size: str | None,
) -> Generation:
    """Submit a photo for ``user`` (the API and the web app's create page): validate, store, charge, trigger.

    Raises HTTPException with the user-facing message when anything is refused; nothing is then
    stored or charged.
    """
    settings = get_settings()
    with Session(get_engine(), expire_on_commit=False) as session:
        if idempotency_key:
            existing = _by_idempotency_key(session, user, idempotency_key)
            if existing is not None:
                return existing

        uploads.check_declared_size(declared_size, settings)
        cleaned_prompt = uploads.validate_prompt(prompt)
        chosen_motion = uploads.validate_motion(motion)
        photo = uploads.validate_photo(uploads.read_photo(image.file, settings), settings)

        available = ledger.balance(user.id, session)
        if available < ledger.TOKENS_PER_GENERATION:
            raise _no_tokens(available)

        generation_id = new_generation_id()
        photo_key = upload_key(generation_id, photo.extension)
        with storage.open_write(photo_key) as out:
            out.write(photo.data)

        # Stored and charged in one transaction before triggering, so the DAG's first task finds
        # the row and its charge, and concurrent requests cannot spend the same token.
        generation = Generation(
            id=generation_id,
            user_id=user.id,
            prompt=cleaned_prompt,
            motion=chosen_motion,
            upload_path=photo_key,
            idempotency_key=idempotency_key or None,
        )
        session.rollback()  # end this request's read snapshot: the rows below are written elsewhere
        try:
            ledger.create_paid_generation(generation)
        except ledger.InsufficientTokens:
            storage.delete(photo_key)
            raise _no_tokens(ledger.balance(user.id)) from None
        except IntegrityError:
            storage.delete(photo_key)
            winner = _by_idempotency_key(session, user, idempotency_key) if idempotency_key else None
            if winner is None:
                raise
            # A concurrent request with the same key got there first: answer with its generation.
            return winner

        trigger_generation(airflow, generation)
        return session.get(Generation, generation.id)


@router.get("", response_model=GenerationsPublic)
def list_generations(session: SessionDep, user: CurrentUser, offset: int = 0, limit: int = 50) -> GenerationsPublic:
    """The caller's generations, newest first."""
    limit = max(1, min(limit, 200))
    rows = session.exec(
        select(Generation)
        .where(Generation.user_id == user.id)
        .order_by(col(Generation.created_at).desc(), col(Generation.id).desc())
        .offset(max(0, offset))
        .limit(limit)
    ).all()
    return GenerationsPublic(data=[generation_public(g) for g in rows], count=len(rows))


@router.get("/{generation_id}", response_model=GenerationPublic)
def read_generation(session: SessionDep, user: BrowserOrApiUser, generation_id: str) -> GenerationPublic:
    return generation_public(_owned_generation(session, user, generation_id))


@router.get("/{generation_id}/assets/{name}", response_class=StreamingResponse)
def download_asset(
    request: Request, session: SessionDep, user: BrowserOrApiUser, generation_id: str, name: str
) -> Response:
    """An asset of one of the caller's generations (buddy.webm, buddy.webp, buddy.gif, poster.png,
    walk.webm, walk.webp when it has a walk loop); answers Range requests."""
    generation = _owned_generation(session, user, generation_id)
    return stream_asset(request, generation, name, cache_control="private, max-age=86400")
