"""Validation of an uploaded photo and prompt, before anything is stored or charged.

The photo is really decoded (Pillow ``verify`` and then a full ``load``), so renamed
non-images and truncated files are refused here rather than failing a paid pipeline later.
The pixel count is read from the header and checked before decoding: a small file that
decodes to a gigantic bitmap (a decompression bomb) never gets decoded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from io import BytesIO
from typing import BinaryIO

from fastapi import HTTPException, status
from PIL import Image, UnidentifiedImageError

from include.settings import Settings
from model_server.vision.prompt import MOTIONS

MAX_PROMPT_CHARS = 500
# Pillow format -> file extension of the stored photo. MPO is how Pillow reports the JPEGs
# many phones write (a JPEG with extra preview frames).
ACCEPTED_FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
# Allowance for the multipart envelope and the prompt on top of the photo itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class ValidatedPhoto:
    data: bytes
    extension: str
    width: int
    height: int


def _reject(code: int, message: str) -> HTTPException:
    return HTTPException(status_code=code, detail=message)


def check_declared_size(content_length: str | None, settings: Settings) -> None:
    """Refuse an oversized request from its Content-Length header before reading it."""
    if content_length and content_length.isdigit():
        if int(content_length) > settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES:
            raise _too_big(settings)


def _too_big(settings: Settings) -> HTTPException:
    limit_mib = settings.max_upload_bytes / (1024 * 1024)
    return _reject(status.HTTP_413_CONTENT_TOO_LARGE, f"The photo is too big: the limit is {limit_mib:g} MiB.")


def validate_prompt(prompt: str | None) -> str:
    cleaned = (prompt or "").strip()
    if not cleaned:
        raise _reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "The prompt is empty: describe your buddy in a few words.")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise _reject(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"The prompt is too long: {len(cleaned)} characters, at most {MAX_PROMPT_CHARS}.",
        )
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


def validate_photo(data: bytes, settings: Settings) -> ValidatedPhoto:
    if not data:
        raise _reject(status.HTTP_422_UNPROCESSABLE_CONTENT, "The photo is empty.")
    not_an_image = _reject(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "The file is not a photo we can read: send a JPEG, PNG or WebP image."
    )
    broken = _reject(
        status.HTTP_422_UNPROCESSABLE_CONTENT, "The photo could not be decoded: the file is truncated or corrupt."
    )
    with warnings.catch_warnings():
        # We enforce our own (lower) pixel limit below; Pillow's warning is noise here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(BytesIO(data)) as image:
                image_format, (width, height) = image.format, image.size
                if image_format not in ACCEPTED_FORMATS:
                    raise not_an_image
                _check_dimensions(width, height, settings)
                image.verify()
            with Image.open(BytesIO(data)) as image:
                image.load()
        except Image.DecompressionBombError:
            raise _bomb(settings) from None
        except UnidentifiedImageError:
            raise not_an_image from None
        except HTTPException:
            raise
        except (OSError, SyntaxError, ValueError, EOFError):
            raise broken from None
    return ValidatedPhoto(data=data, extension=ACCEPTED_FORMATS[image_format], width=width, height=height)


def _bomb(settings: Settings) -> HTTPException:
    return _reject(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        f"The photo has too many pixels: at most {settings.max_upload_pixels / 1e6:g} megapixels.",
    )


def _check_dimensions(width: int, height: int, settings: Settings) -> None:
    if width * height > settings.max_upload_pixels:
        raise _bomb(settings)
    if min(width, height) < settings.min_upload_side:
        raise _reject(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"The photo is too small ({width}x{height}): each side needs at least {settings.min_upload_side} pixels.",
        )
