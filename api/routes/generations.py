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
from api.deps import AirflowDep, BrowserOrApiUser, CurrentUser, ErrorBody, SessionDep, api_key_scheme, authenticate
from api.presenters import generation_public
from api.triggering import trigger_generation
from include import deletion, ledger, quotas, storage
from include.airflow_client import AirflowClient
from include.db import get_engine
from include.generations import upload_key
from include.models import Generation, GenerationPublic, GenerationsPublic, GenerationUpdate, User, new_generation_id
from include.user_messages import is_plain_text
from include.settings import get_settings
from include.stages import MOTIONS

log = logging.getLogger(__name__)

router = APIRouter(prefix="/generations", tags=["generations"])


def _owned_generation(session: Session, user: User, generation_id: str) -> Generation:
    generation = session.get(Generation, generation_id)
    # Someone else's generation is reported exactly like a missing one.
    if generation is None or generation.user_id != user.id or generation.deleted_at is not None:
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


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=GenerationPublic,
    responses={
        402: {"model": ErrorBody, "description": "No tokens left"},
        413: {"model": ErrorBody, "description": "The photo or the request is too large"},
        415: {"model": ErrorBody, "description": "Not a JPEG, PNG or WebP photo"},
        429: {"model": ErrorBody, "description": "Over a per-user limit (see Retry-After)"},
    },
)
async def create_generation(
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

    Nothing is stored or charged unless the photo and prompt are valid; the stored photo is a
    clean re-encoding (orientation applied, no EXIF/GPS or other metadata). The token is taken here,
    in the transaction that stores the generation (``ledger.create_paid_generation``); the
    pipeline's ``charge_token`` task then finds that charge under the same ledger key.
    """
    def caller() -> User:
        with Session(get_engine(), expire_on_commit=False) as session:
            return authenticate(session, credentials)

    user = await asyncio.to_thread(caller)
    return generation_public(await submit_generation(airflow, user, image, prompt, motion, idempotency_key))


async def submit_generation(
    airflow: AirflowClient, user: User, image: UploadFile, prompt: str, motion: str, idempotency_key: str | None
) -> Generation:
    """Submit a photo for ``user`` (the API and the web app's create page): validate, store, charge, trigger.

    Raises HTTPException with the user-facing message (``quotas.LimitExceeded`` over a per-user
    limit) when anything is refused; nothing is then stored or charged.
    """
    # Blocking work in thread hops (sync dependencies would each take a hop through an event loop
    # busy with SSE streams); decoding on its own pool, so heavy photos cannot take the threads
    # that store progress events.
    settings = get_settings()
    accepted = await asyncio.to_thread(_accept, user, image, prompt, motion, idempotency_key, settings)
    if isinstance(accepted, Generation):
        return accepted  # the same Idempotency-Key: the same generation
    cleaned_prompt, chosen_motion, data = accepted
    photo = await uploads.decode(data, settings)
    return await asyncio.to_thread(_store_and_start, airflow, user, cleaned_prompt, chosen_motion, photo, idempotency_key)


def _accept(
    user: User, image: UploadFile, prompt: str, motion: str, idempotency_key: str | None, settings
) -> Generation | tuple[str, str | None, bytes]:
    """Replay of an idempotent request, per-user limits, prompt and motion; the photo's bytes."""
    with Session(get_engine(), expire_on_commit=False) as session:
        if idempotency_key:
            existing = _by_idempotency_key(session, user, idempotency_key)
            if existing is not None:
                return existing
        quotas.count_upload(user.id)  # every attempt counts, refused ones too
        quotas.check_generations_in_flight(session, user.id)
        cleaned_prompt = uploads.validate_prompt(prompt)
        chosen_motion = uploads.validate_motion(motion)
        data = uploads.read_photo(image.file, settings)
        available = ledger.balance(user.id, session)
        if available < ledger.TOKENS_PER_GENERATION:
            raise _no_tokens(available)
        return cleaned_prompt, chosen_motion, data


def _store_and_start(
    airflow: AirflowClient,
    user: User,
    cleaned_prompt: str,
    chosen_motion: str | None,
    photo: uploads.ValidatedPhoto,
    idempotency_key: str | None,
) -> Generation:
    with Session(get_engine(), expire_on_commit=False) as session:
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
        .where(Generation.user_id == user.id, Generation.deleted_at.is_(None))
        .order_by(col(Generation.created_at).desc(), col(Generation.id).desc())
        .offset(max(0, offset))
        .limit(limit)
    ).all()
    return GenerationsPublic(data=[generation_public(g) for g in rows], count=len(rows))


@router.get("/{generation_id}", response_model=GenerationPublic)
def read_generation(session: SessionDep, user: BrowserOrApiUser, generation_id: str) -> GenerationPublic:
    return generation_public(_owned_generation(session, user, generation_id))


@router.patch("/{generation_id}", response_model=GenerationPublic, responses={404: {"model": ErrorBody, "description": "No such buddy"}})
def update_generation(session: SessionDep, user: CurrentUser, generation_id: str, body: GenerationUpdate) -> GenerationPublic:
    """Set (or clear, with null) the title its public share page shows; without one it shows none."""
    generation = _owned_generation(session, user, generation_id)
    title = (body.share_title or "").strip() or None
    if title is not None and not is_plain_text(title):
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail="The title contains control characters.")
    generation.share_title = title
    session.add(generation)
    session.commit()
    return generation_public(generation)


@router.delete(
    "/{generation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"model": ErrorBody, "description": "No such buddy"}, 409: {"model": ErrorBody, "description": "Still being made, or on a sticker order in flight"}},
)
def delete_generation(user: CurrentUser, generation_id: str) -> None:
    """Delete one of your buddies: its photo, intermediate files and assets. Its share page, assets,
    widget and sticker QR codes stop working; your token history keeps the charge."""
    try:
        deletion.delete_generation(user.id, generation_id)
    except deletion.NotFound:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Generation not found.") from None
    except deletion.DeletionRefused as refused:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(refused)) from None


@router.get("/{generation_id}/assets/{name}", response_class=StreamingResponse)
def download_asset(
    request: Request, session: SessionDep, user: BrowserOrApiUser, generation_id: str, name: str
) -> Response:
    """An asset of one of the caller's generations (buddy.webm, buddy.webp, buddy.gif, poster.png,
    walk.webm, walk.webp when it has a walk loop); answers Range requests."""
    generation = _owned_generation(session, user, generation_id)
    return stream_asset(request, generation, name, cache_control="private, max-age=86400")
