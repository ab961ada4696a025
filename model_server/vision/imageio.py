"""Image bytes <-> numpy arrays for the vision stages, and the PNG metadata they carry.

Photos arrive as JPEG/PNG/WebP bytes; stages exchange PNGs whose ``bitbuddies`` text chunk
holds JSON metadata (analysis results, landmarks) so that each stage's output is
self-describing.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from model_server.vision.errors import INVALID_IMAGE, VisionError

META_KEY = "bitbuddies"

# EXIF Orientation -> clockwise degrees the camera asked us to turn the stored pixels.
# Mirrored variants (2, 4, 5, 7) count by their rotation part; the mirror is still applied.
_EXIF_ROTATION = {1: 0, 2: 0, 3: 180, 4: 180, 5: 90, 6: 90, 7: 270, 8: 270}

# Refuse decompression bombs before they eat the model server's memory.
_MAX_PIXELS = 80_000_000


def decode_image(data: bytes) -> tuple[np.ndarray, int]:
    """Decode image bytes to RGB uint8 with the EXIF orientation applied.

    Returns the array and the clockwise rotation in degrees that EXIF asked for.
    Raises ``VisionError("invalid_image")`` for anything that is not a decodable image.
    """
    if not data:
        raise VisionError(INVALID_IMAGE, "The upload is empty. Please choose a photo (JPEG, PNG or WebP).")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > _MAX_PIXELS:
                raise VisionError(INVALID_IMAGE, "This photo is too large. Please upload a smaller one.")
            orientation = img.getexif().get(0x0112, 1)
            upright = ImageOps.exif_transpose(img)
            if upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info):
                # Transparent areas become white, like a sheet of paper, not black.
                rgba = upright.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                canvas.alpha_composite(rgba)
                upright = canvas
            rgb = np.asarray(upright.convert("RGB"), dtype=np.uint8).copy()
    except VisionError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise VisionError(INVALID_IMAGE, "We couldn't read this file as a photo. Please upload a JPEG, PNG or WebP.") from exc
    return rgb, _EXIF_ROTATION.get(int(orientation), 0)


def encode_png(rgb_or_rgba: np.ndarray, meta: dict | None = None) -> bytes:
    """Encode an RGB or RGBA uint8 array as PNG, with ``meta`` as a JSON text chunk."""
    arr = np.ascontiguousarray(rgb_or_rgba)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected HxWx3 or HxWx4 uint8, got {arr.dtype} {arr.shape}")
    img = Image.fromarray(arr, "RGBA" if arr.shape[2] == 4 else "RGB")
    info = PngImagePlugin.PngInfo()
    if meta:
        info.add_text(META_KEY, json.dumps(meta, separators=(",", ":")))
    out = io.BytesIO()
    # compress_level 3: PNGs here are intermediate products, speed matters more than bytes.
    img.save(out, format="PNG", pnginfo=info, compress_level=3)
    return out.getvalue()


def read_png_meta(data: bytes) -> dict:
    """The JSON metadata stored by :func:`encode_png`; ``{}`` when absent."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            text = img.info.get(META_KEY)
    except (UnidentifiedImageError, OSError) as exc:
        raise VisionError(INVALID_IMAGE, "We couldn't read this file as an image.") from exc
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
