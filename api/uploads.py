"""Validation of an uploaded photo and prompt for the API, refusals as HTTP errors.

The photo's checks and the clean copy that is stored (decoded for real, decompression bombs
refused from the header, re-encoded without EXIF/GPS or other metadata) are in
``include/photos.py``, shared with the operator's trigger form in Airflow.

Decoding runs on its own small thread pool (``decode``), so a burst of heavy photos queues there
instead of taking the threads that store progress events and answer other requests.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from fastapi import HTTPException, status

from include import photos
from include.photos import ACCEPTED_FORMATS, ValidatedPhoto  # noqa: F401 - the API's names for them
from include.settings import Settings
from include.user_messages import is_plain_text
from include.stages import MOTIONS

MAX_PROMPT_CHARS = 500
# Two decodes at a time at most: on two cores more only queue for the CPU.
DECODE_WORKERS = 2
_decode_pool = ThreadPoolExecutor(max_workers=DECODE_WORKERS, thread_name_prefix="bitbuddies-decode")


def _reject(code: int, message: str) -> HTTPException:
    return HTTPException(status_code=code, detail=message)


def _too_big(settings: Settings) -> HTTPException:
    return _reject(status.HTTP_413_CONTENT_TOO_LARGE, photos.too_big(settings).message)


def validate_prompt(prompt: str | None) -> str:
    cleaned = (prompt or "").strip()
    if not cleaned:
        raise _reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "The prompt is empty: describe your buddy in a few words.")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise _reject(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"The prompt is too long: {len(cleaned)} characters, at most {MAX_PROMPT_CHARS}.",
        )
    if not is_plain_text(cleaned):
        raise _reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "The prompt contains control characters.")
    return cleaned


def validate_motion(motion: str | None) -> str | None:
    """The chosen motion, or None to let the pipeline read it from the prompt."""
    cleaned = (motion or "").strip().lower()
    if not cleaned:
        return None
    if cleaned not in MOTIONS:
        raise _reject(status.HTTP_422_UNPROCESSABLE_CONTENT, f"Unknown motion {cleaned!r}: choose one of {', '.join(MOTIONS)}.")
    return cleaned


def read_photo(stream: BinaryIO, settings: Settings) -> bytes:
    """Read the upload, refusing more than ``max_upload_bytes``."""
    data = stream.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise _too_big(settings)
    return data


async def decode(data: bytes, settings: Settings) -> ValidatedPhoto:
    """:func:`validate_photo` on the decode pool."""
    return await asyncio.get_running_loop().run_in_executor(_decode_pool, validate_photo, data, settings)


def validate_photo(data: bytes, settings: Settings) -> ValidatedPhoto:
    """Check the photo and return its clean copy (``include/photos.py``), refusals as HTTP errors."""
    try:
        return photos.validate_photo(data, settings)
    except photos.PhotoRejected as exc:
        raise _reject(exc.status_code, exc.message) from None
