"""Generations an operator starts from Airflow's trigger form, stored as the API stores its own.

The generation DAG's first task calls :func:`store` when its run was not started by the API
(the API's runs carry ``generation_id`` in their conf and skip all of this). The request names a
photo (an ``http(s)`` URL or an absolute path of a file on the worker), a prompt, an optional
motion, the user's email and who pays: the user's tokens, exactly as an API submission, or an
operator grant (``ledger.create_paid_generation(operator_grant=True)``: a grant keyed
``operator-grant:{generation id}`` that pays the charge, so the ledger says who paid).

The generation's id is derived from the DAG run (:func:`generation_id_for_run`), so a retried
task finds the generation it stored and never stores or charges twice. The photo goes through
the API's checks and is stored as its clean copy (``include/photos.py``). The row is stored as
already triggered: its run is the one storing it, and the API's trigger loop must not start
another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from include import ledger, photos, storage
from include.accounts import normalize_email
from include.db import session_scope
from include.generations import upload_key
from include.models import Generation, User, utcnow
from include.settings import Settings, get_settings
from include.stages import MOTIONS
from include.user_messages import is_plain_text

# Who pays for an operator's generation: the user's tokens, or a grant recorded in the ledger.
PAYMENTS = ("user_tokens", "operator_grant")
MAX_PROMPT_CHARS = 500
PHOTO_DOWNLOAD_TIMEOUT_SECONDS = 30.0


class OperatorRequestRefused(ValueError):
    """The request cannot be carried out; ``str()`` tells the operator what to change."""


@dataclass(frozen=True)
class OperatorRequest:
    photo: str  # http(s) URL or absolute path on the worker
    prompt: str
    email: str
    motion: str | None = None
    payment: str = "user_tokens"


def generation_id_for_run(dag_id: str, run_id: str) -> str:
    """The generation id of a run the API did not start: stable per run, 32 hex characters like the API's."""
    return hashlib.sha256(f"{dag_id}\n{run_id}".encode()).hexdigest()[:32]


def read_photo(source: str, settings: Settings | None = None) -> bytes:
    """The bytes of the photo at ``source`` (URL or absolute path), at most ``max_upload_bytes``."""
    settings = settings or get_settings()
    limit = settings.max_upload_bytes
    source = (source or "").strip()
    if source.startswith(("http://", "https://")):
        try:
            with httpx.stream("GET", source, timeout=PHOTO_DOWNLOAD_TIMEOUT_SECONDS, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise OperatorRequestRefused(f"The photo URL answered HTTP {response.status_code}: {source}")
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise OperatorRequestRefused(photos.too_big(settings).message)
                return bytes(data)
        except httpx.TransportError as exc:
            raise ConnectionError(f"could not download the photo from {source}: {exc}") from exc  # retried
    path = Path(source)
    if not path.is_absolute():
        raise OperatorRequestRefused(f"Give the photo as an http(s) URL or an absolute file path, not {source!r}.")
    if not path.is_file():
        raise OperatorRequestRefused(f"There is no file {source} on the worker.")
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OperatorRequestRefused(photos.too_big(settings).message)
    return data


def check(request: OperatorRequest) -> OperatorRequest:
    """The request with its prompt, motion, email and payment cleaned; refused when unusable."""
    prompt = (request.prompt or "").strip()
    if not prompt or len(prompt) > MAX_PROMPT_CHARS or not is_plain_text(prompt):
        raise OperatorRequestRefused(f"Give a prompt of 1 to {MAX_PROMPT_CHARS} characters of plain text.")
    motion = (request.motion or "").strip().lower() or None
    if motion is not None and motion not in MOTIONS:
        raise OperatorRequestRefused(f"Unknown motion {motion!r}: choose one of {', '.join(MOTIONS)}.")
    if request.payment not in PAYMENTS:
        raise OperatorRequestRefused(f"Unknown payment {request.payment!r}: one of {', '.join(PAYMENTS)}.")
    if not (request.photo or "").strip():
        raise OperatorRequestRefused("Give the photo: an http(s) URL or an absolute file path on the server.")
    if not normalize_email(request.email):
        raise OperatorRequestRefused("Give the email of the user the buddy is for.")
    return OperatorRequest(request.photo.strip(), prompt, normalize_email(request.email), motion, request.payment)


def user_by_email(email: str) -> User:
    with session_scope() as session:
        user = session.exec(select(User).where(User.email == normalize_email(email), User.deleted_at.is_(None))).first()
    if user is None:
        raise OperatorRequestRefused(f"No user has the email {email!r}.")
    return user


def store(generation_id: str, request: OperatorRequest, run_id: str | None = None) -> Generation:
    """Store and pay for the generation ``generation_id`` (of the Airflow run ``run_id``) once; a
    repeat returns the stored one."""
    with session_scope() as session:
        existing = session.get(Generation, generation_id)
    if existing is not None:
        return existing
    request = check(request)
    user = user_by_email(request.email)
    settings = get_settings()
    try:
        photo = photos.validate_photo(read_photo(request.photo, settings), settings)
    except photos.PhotoRejected as exc:
        raise OperatorRequestRefused(exc.message) from None
    key = upload_key(generation_id, photo.extension)
    with storage.open_write(key) as out:
        out.write(photo.data)
    now = utcnow()
    generation = Generation(
        id=generation_id, user_id=user.id, prompt=request.prompt, motion=request.motion, upload_path=key,
        triggered_at=now, airflow_run_id=run_id, created_at=now, updated_at=now,
    )
    try:
        ledger.create_paid_generation(generation, operator_grant=request.payment == "operator_grant")
    except ledger.InsufficientTokens as exc:
        storage.delete(key)
        raise OperatorRequestRefused(f"{user.email}: {exc} Choose the operator grant to pay for it.") from None
    except IntegrityError:  # a concurrent try of the same task stored it first
        with session_scope() as session:
            existing = session.get(Generation, generation_id)
        if existing is None:
            raise
        return existing
    return generation
