"""Test posters for sticker sheets: skimage's public-domain/CC0 photos cut out with a soft alpha.

Until real generations are wired in, these stand in for a buddy's transparent poster frame:
512 px on the long side like the generation's poster PNG, subject cut out by an irregular
alpha (an ellipse with a separate "prop" blob, so contours must merge parts), soft-edged.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image
from skimage import data

from fulfillment.sheet import Sticker

POSTER_SIDE = 512
SHARE_BASE = "http://127.0.0.1:8000/b/"


def cut_out(photo: np.ndarray, with_prop: bool = True) -> np.ndarray:
    """RGBA at 512 px long side: the photo inside a soft ellipse, plus a small separate blob."""
    height, width = photo.shape[:2]
    scale = POSTER_SIDE / max(height, width)
    photo = cv2.resize(photo, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    height, width = photo.shape[:2]
    alpha = np.zeros((height, width), np.uint8)
    cv2.ellipse(alpha, (width // 2, height // 2), (int(width * 0.33), int(height * 0.44)), 0, 0, 360, 255, -1)
    if with_prop:
        cv2.circle(alpha, (int(width * 0.93), int(height * 0.12)), max(6, width // 30), 255, -1)
    alpha = cv2.GaussianBlur(alpha, (7, 7), 0)
    return np.dstack([photo, alpha])


def png_bytes(rgba: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


def sample_stickers() -> list[Sticker]:
    """Three buddies: astronaut, chelsea (cat) and coffee, each with its own share slug."""
    return [
        Sticker(png_bytes(cut_out(data.astronaut())), SHARE_BASE + "astro7Qk2", "Astro the Brave Explorer"),
        Sticker(png_bytes(cut_out(data.chelsea())), SHARE_BASE + "chel5Mx9", "Chelsea"),
        Sticker(png_bytes(cut_out(data.coffee())), SHARE_BASE + "cofE3nP1", "Coffee Buddy"),
    ]
