"""A photo's validation and the clean copy of it that is stored, for every way a photo comes in.

The API's upload (``api/uploads.py``) and the operator's trigger form in Airflow (a photo URL or
a file on the server) both go through ``validate_photo``. The photo is really decoded, so renamed
non-images and truncated files are refused before a paid pipeline starts. Its size is read from
the header first and checked in pixels and in decoded bytes before anything is decoded: a small
file that decodes to a gigantic bitmap (a decompression bomb) never gets decoded. Pillow's own
guard (``MAX_IMAGE_PIXELS``) is set to the same limit as a second line.

What is stored is not the given file but a re-encoding of its pixels with the EXIF orientation
applied: no EXIF (GPS position, camera, time), XMP, IPTC or comments survive. Only the colour
profile is kept, which carries nothing about the person.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, ImageOps, UnidentifiedImageError

from include.settings import Settings

# Pillow format -> file extension of the stored photo. MPO is how Pillow reports the JPEGs
# many phones write (a JPEG with extra preview frames).
ACCEPTED_FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
# Format the clean copy is written in, per extension; JPEG at a quality that keeps the detail the
# models need (the original was already lossy).
_SAVE = {"jpg": ("JPEG", {"quality": 95, "subsampling": 0}), "png": ("PNG", {"optimize": False}), "webp": ("WEBP", {"quality": 95})}


class PhotoRejected(ValueError):
    """A photo that cannot be used; ``str()`` is the message for the person, ``status_code`` the
    HTTP status the API answers with (415: not an image, 413: too big, 422: otherwise unusable)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class ValidatedPhoto:
    data: bytes  # the clean re-encoded copy, not the given file
    extension: str
    width: int
    height: int


def _reject(code: int, message: str) -> PhotoRejected:
    return PhotoRejected(code, message)


def too_big(settings: Settings) -> PhotoRejected:
    limit_mib = settings.max_upload_bytes / (1024 * 1024)
    return PhotoRejected(413, f"The photo is too big: the limit is {limit_mib:g} MiB.")


def validate_photo(data: bytes, settings: Settings) -> ValidatedPhoto:
    """Check the photo and return its clean copy (orientation applied, no metadata)."""
    if not data:
        raise _reject(422, "The photo is empty.")
    not_an_image = _reject(
        415, "The file is not a photo we can read: send a JPEG, PNG or WebP image."
    )
    broken = _reject(
        422, "The photo could not be decoded: the file is truncated or corrupt."
    )
    # Pillow refuses (DecompressionBombError) above twice this, whatever the caller checks.
    Image.MAX_IMAGE_PIXELS = settings.max_upload_pixels
    with warnings.catch_warnings():
        # We enforce our own limits below; Pillow's warning is noise here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(BytesIO(data)) as image:
                image_format = image.format
                if image_format not in ACCEPTED_FORMATS:
                    raise not_an_image
                _check_dimensions(image.width, image.height, image.mode, settings)
                image.verify()
            with Image.open(BytesIO(data)) as image:
                extension = ACCEPTED_FORMATS[image_format]
                clean = _clean_copy(image)
        except Image.DecompressionBombError:
            raise _bomb(settings) from None
        except UnidentifiedImageError:
            raise not_an_image from None
        except PhotoRejected:
            raise
        except (OSError, SyntaxError, ValueError, EOFError):
            raise broken from None
    _check_dimensions(clean.width, clean.height, clean.mode, settings)
    return ValidatedPhoto(data=_encode(clean, extension, image.info.get("icc_profile")), extension=extension, width=clean.width, height=clean.height)


def _clean_copy(image: Image.Image) -> Image.Image:
    """The first frame's pixels, upright, in a new image that carries no metadata at all."""
    image.seek(0)
    image.load()
    upright = ImageOps.exif_transpose(image)
    if upright.mode not in ("RGB", "RGBA", "L", "LA"):
        upright = upright.convert("RGBA" if "A" in upright.getbands() or "transparency" in upright.info else "RGB")
    # frombytes builds an image whose info is empty: no exif, xmp, comment or text chunks to carry over.
    return Image.frombytes(upright.mode, upright.size, upright.tobytes())


def _encode(image: Image.Image, extension: str, icc_profile: bytes | None) -> bytes:
    image_format, options = _SAVE[extension]
    if image_format == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")  # JPEG has no alpha; a PNG-with-alpha renamed .jpg is not possible here
    if icc_profile:
        options = {**options, "icc_profile": icc_profile}
    out = BytesIO()
    image.save(out, image_format, **options)
    return out.getvalue()


def _bomb(settings: Settings) -> PhotoRejected:
    return _reject(
        422,
        f"The photo has too many pixels: at most {settings.max_upload_pixels / 1e6:g} megapixels.",
    )


def _bytes_per_pixel(mode: str) -> int:
    try:
        return max(1, len(Image.new(mode, (1, 1)).tobytes()))
    except ValueError:  # a mode Pillow cannot build: assume the widest common one
        return 8


def _check_dimensions(width: int, height: int, mode: str, settings: Settings) -> None:
    if width * height > settings.max_upload_pixels:
        raise _bomb(settings)
    # Decoding to RGBA (4 bytes a pixel) or 16-bit modes costs more than the pixel count says.
    if width * height * max(4, _bytes_per_pixel(mode)) > settings.max_decoded_bytes:
        raise _reject(
            422,
            f"The photo is too large to process once decoded: at most {settings.max_decoded_bytes // (1024 * 1024)} MiB of pixels.",
        )
    if min(width, height) < settings.min_upload_side:
        raise _reject(
            422,
            f"The photo is too small ({width}x{height}): each side needs at least {settings.min_upload_side} pixels.",
        )
