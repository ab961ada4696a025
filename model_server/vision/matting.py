"""The "segment video" stage: frames composited on a flat key colour in, RGBA frames out.

The key colour is chosen far from every colour of the character. The matte is a real chroma
key: distance to the key in Lab with soft thresholds gives the opaque core and the clear
background; in between, alpha is recovered by projecting each pixel onto the line from the
key to the nearby foreground colour (a composite is a*fg + (1-a)*key), which is exact for
``composite_on_key`` output and robust to 8-bit/lossy round trips. Edge colours are
decontaminated (the key's spill is removed) and specks are cleaned up per frame.

Speed: the character covers a fraction of each frame, so both directions only touch the box
around it. ``key_matte`` finds that box with one cheap 8-bit difference against the key: a
pixel within ``_key_tolerance`` of the key in every channel is provably within the noise
distance in Lab, so it is pure background (alpha 0) and the matte of the box equals the matte
of the whole frame. A loop of whole beats repeats its frames: both directions work on each
distinct frame once (``first_copies``) and copy the result to its repeats.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import cv2
import numpy as np

# Candidate keys: the classic screens and other saturated colours that rarely occur in people.
_CANDIDATES = [
    (0, 255, 0), (255, 0, 255), (0, 0, 255), (0, 255, 255), (255, 255, 0), (0, 128, 255),
    (128, 0, 255), (255, 0, 128), (0, 255, 128), (128, 255, 0), (255, 0, 0), (0, 160, 80),
]
CORE_DISTANCE = 0.55  # share of key->character colour distance above which a pixel is opaque
NOISE_DISTANCE = 6.0  # Lab units within which a pixel is pure key (compression noise)
# Margin around the character's box: wider than the 7x7 colour blur and 3x3 opening reach, so
# filters at the box's edge see only background, as they would in the whole frame.
_BOX_PAD = 8


def _lab(rgb_u8: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(rgb_u8, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    return lab


def _key_distance(rgb_u8: np.ndarray, key_lab: np.ndarray) -> np.ndarray:
    """Float32 Lab distance of each pixel to the key (Lab as ``_lab`` scales it)."""
    # One affine per pixel does _lab's scaling and the subtraction of the key.
    to_diff = np.array([[100.0 / 255.0, 0, 0, -key_lab[0]], [0, 1, 0, -128.0 - key_lab[1]],
                        [0, 0, 1, -128.0 - key_lab[2]]], np.float32)
    diff = cv2.transform(cv2.cvtColor(rgb_u8, cv2.COLOR_RGB2LAB).astype(np.float32), to_diff)
    return cv2.sqrt(cv2.transform(cv2.multiply(diff, diff), np.ones((1, 3), np.float32)))


def pick_key_color(rgba: np.ndarray) -> tuple[int, int, int]:
    """The candidate key colour farthest (in Lab) from every visible colour of the character."""
    visible = rgba[..., :3][rgba[..., 3] > 16]
    if len(visible) == 0:
        return _CANDIDATES[0]
    if len(visible) > 20000:
        visible = visible[np.random.default_rng(3).choice(len(visible), 20000, replace=False)]
    pix = _lab(visible.reshape(-1, 1, 3)).reshape(-1, 3)
    keys = _lab(np.array(_CANDIDATES, np.uint8).reshape(-1, 1, 3)).reshape(-1, 3)
    # The 0.5th percentile instead of the minimum: one stray pixel must not veto a good key.
    dists = [float(np.percentile(np.linalg.norm(pix - k, axis=1), 0.5)) for k in keys]
    return tuple(int(v) for v in _CANDIDATES[int(np.argmax(dists))])


def first_copies(frames: np.ndarray) -> list[int]:
    """For each frame, the index of the first frame with exactly the same pixels (itself if none)."""
    seen: dict[int, list[int]] = {}
    out = []
    for i, frame in enumerate(frames):
        # A checksum only picks the candidates (fast); equal pixels are then checked exactly.
        digest = zlib.crc32(np.ascontiguousarray(frame))
        same = next((j for j in seen.get(digest, ()) if np.array_equal(frames[j], frame)), i)
        if same == i:
            seen.setdefault(digest, []).append(i)
        out.append(same)
    return out


def _box_of(mask_2d: np.ndarray, channels: int, pad: int) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) around the non-zero entries of a (H, W * channels) mask, padded."""
    x, y, bw, bh = cv2.boundingRect(mask_2d)
    if bw == 0 or bh == 0:
        return None
    h, w = mask_2d.shape[0], mask_2d.shape[1] // channels
    return (max(0, x // channels - pad), max(0, y - pad),
            min(w, (x + bw + channels - 1) // channels + pad), min(h, y + bh + pad))


def composite_on_key(frames_rgba: np.ndarray, key: tuple[int, int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8: the frames laid over a flat key colour."""
    n, h, w = frames_rgba.shape[:3]
    key_img = np.empty((h, w, 3), np.uint8)
    key_img[...] = np.asarray(key, np.uint8)
    out = np.empty((n, h, w, 3), np.uint8)
    out[:] = key_img  # whole-frame copies: far faster than broadcasting a 3-value colour
    for i, (same, frame, dest) in enumerate(zip(first_copies(frames_rgba), frames_rgba, out)):
        if same != i:
            dest[...] = out[same]
            continue
        box = _box_of(frame[..., 3], 1, 0)
        if box is None:
            continue  # fully transparent: all key
        x0, y0, x1, y1 = box
        crop = frame[y0:y1, x0:x1]
        weight = crop[..., 3].astype(np.float32) * (1.0 / 255.0)
        # a*rgb + (1-a)*key per pixel, rounded and saturated by OpenCV in one pass.
        dest[y0:y1, x0:x1] = cv2.blendLinear(np.ascontiguousarray(crop[..., :3]), dest[y0:y1, x0:x1],
                                             weight, 1.0 - weight)
    return out


@lru_cache(maxsize=64)
def _key_tolerance(key: tuple[int, int, int]) -> int:
    """Largest per-channel 8-bit difference from ``key`` that stays within NOISE_DISTANCE in Lab.

    Found by trying every colour in the cube around the key (the Lab conversion is the one the
    matte uses), so skipping such pixels as background never changes the matte.
    """
    key_lab = _lab(np.array(key, np.uint8).reshape(1, 1, 3)).reshape(3)
    best = 0
    for tolerance in range(1, 9):
        offsets = np.arange(-tolerance, tolerance + 1)
        cube = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), axis=-1).reshape(-1, 3)
        colours = np.clip(cube + np.asarray(key), 0, 255).astype(np.uint8).reshape(-1, 1, 3)
        if float(_key_distance(colours, key_lab).max()) > NOISE_DISTANCE:
            break
        best = tolerance
    return best


def _matte_frame(rgb: np.ndarray, key_rgb: np.ndarray, key_lab: np.ndarray, core_thresh: float) -> np.ndarray:
    dist = _key_distance(rgb, key_lab)
    core = (dist >= core_thresh).astype(np.uint8)
    core = cv2.morphologyEx(core, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))  # specks of noise
    # Foreground colour near each edge pixel: normalised blur of the opaque core's colours
    # (box means straight from 8 bits into float32, no rounding).
    core_rgb = cv2.bitwise_and(rgb, rgb, mask=core)
    weight = cv2.boxFilter(core, cv2.CV_32F, (7, 7))
    core_colours = cv2.boxFilter(core_rgb, cv2.CV_32F, (7, 7))
    # The core keeps its colour and is opaque.
    opaque = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    out = cv2.bitwise_and(opaque, opaque, mask=core)
    # Everything else is background unless it is near the core and clearly off the key (the soft
    # Lab threshold): only those band pixels need the projection, so only they are computed.
    band = np.flatnonzero((core == 0) & (weight > 1e-3) & (dist > NOISE_DISTANCE))
    f = rgb.reshape(-1, 3)[band].astype(np.float32)
    fg = core_colours.reshape(-1, 3)[band] / np.maximum(weight.ravel()[band], 1e-4)[:, None]
    d_fg = fg - key_rgb
    denom = np.maximum((d_fg * d_fg).sum(axis=1), 1.0)
    alpha = np.clip(((f - key_rgb) * d_fg).sum(axis=1) / denom, 0.0, 1.0)
    # Decontaminate: remove the key's share from edge colours (no green halo on any background).
    a_col = alpha[:, None]
    clean = (f - (1.0 - a_col) * key_rgb) / np.maximum(a_col, 1e-3)
    edge = (alpha > 0) & (alpha < 1)
    colour = np.where(edge[:, None], np.clip(clean, 0, 255) * 0.5 + np.clip(fg, 0, 255) * 0.5, f)
    alpha_u8 = np.clip(np.round(alpha * 255), 0, 255).astype(np.uint8)
    # Invisible pixels carry no colour (smaller files downstream, no key colour left anywhere).
    colour[alpha_u8 == 0] = 0
    band_out = np.empty((len(alpha), 4), np.uint8)
    band_out[:, :3] = np.clip(np.round(colour), 0, 255)
    band_out[:, 3] = alpha_u8
    out.reshape(-1, 4)[band] = band_out
    return out


def key_matte(frames_rgb: np.ndarray, key: tuple[int, int, int]) -> np.ndarray:
    """(N, H, W, 4) uint8: RGBA frames recovered from frames over a flat key colour."""
    key = tuple(int(v) for v in key)
    n, h, w = frames_rgb.shape[:3]
    key_rgb = np.asarray(key, np.float32)
    key_lab = _lab(np.array(key, np.uint8).reshape(1, 1, 3)).reshape(3)
    key_img = np.empty((h, w, 3), np.uint8)
    key_img[...] = np.asarray(key, np.uint8)
    tolerance = _key_tolerance(key)

    def box_of(frame: np.ndarray) -> tuple[int, int, int, int] | None:
        diff = cv2.absdiff(frame, key_img).reshape(h, w * 3)  # channels side by side: one 2-D mask
        _, differs = cv2.threshold(diff, tolerance, 255, cv2.THRESH_BINARY)
        return _box_of(differs, 3, _BOX_PAD)

    out = np.zeros((n, h, w, 4), np.uint8)
    if n == 0:
        return out
    copies = first_copies(frames_rgb)
    boxes = [box_of(np.ascontiguousarray(frame)) if same == i else None
             for i, (same, frame) in enumerate(zip(copies, frames_rgb))]
    # The opaque threshold adapts to the video: a share of how far the character's colours are
    # from the key (measured on the first frame), never below a safe floor. Outside the box every
    # pixel is within the noise distance, so the box holds all the "far" pixels.
    far = np.empty(0, np.float32)
    if boxes[0] is not None:
        x0, y0, x1, y1 = boxes[0]
        first = _key_distance(np.ascontiguousarray(frames_rgb[0, y0:y1, x0:x1]), key_lab)
        far = first[first > 2 * NOISE_DISTANCE]
    reach = float(np.percentile(far, 5)) if len(far) else 40.0
    core_thresh = float(np.clip(CORE_DISTANCE * reach, 3 * NOISE_DISTANCE, 60.0))
    for i, (same, frame, box, dest) in enumerate(zip(copies, frames_rgb, boxes, out)):
        if same != i:
            dest[...] = out[same]
            continue
        if box is None:
            continue  # pure key: fully transparent
        x0, y0, x1, y1 = box
        dest[y0:y1, x0:x1] = _matte_frame(np.ascontiguousarray(frame[y0:y1, x0:x1]), key_rgb, key_lab, core_thresh)
    return out
