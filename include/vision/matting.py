"""The "segment video" stage: frames composited on a flat key colour in, RGBA frames out.

The key colour is chosen far from every colour of the character. The matte is a real chroma
key: distance to the key in Lab with soft thresholds gives the opaque core and the clear
background; in between, alpha is recovered by projecting each pixel onto the line from the
key to the nearby foreground colour (a composite is a*fg + (1-a)*key), which is exact for
``composite_on_key`` output and robust to 8-bit/lossy round trips. Edge colours are
decontaminated (the key's spill is removed) and specks are cleaned up per frame.
"""

from __future__ import annotations

import cv2
import numpy as np

# Candidate keys: the classic screens and other saturated colours that rarely occur in people.
_CANDIDATES = [
    (0, 255, 0), (255, 0, 255), (0, 0, 255), (0, 255, 255), (255, 255, 0), (0, 128, 255),
    (128, 0, 255), (255, 0, 128), (0, 255, 128), (128, 255, 0), (255, 0, 0), (0, 160, 80),
]
CORE_DISTANCE = 0.55  # share of key->character colour distance above which a pixel is opaque
NOISE_DISTANCE = 6.0  # Lab units within which a pixel is pure key (compression noise)


def _lab(rgb_u8: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(rgb_u8, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    return lab


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


def composite_on_key(frames_rgba: np.ndarray, key: tuple[int, int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8: the frames laid over a flat key colour."""
    a = frames_rgba[..., 3:4].astype(np.float32) / 255.0
    out = frames_rgba[..., :3].astype(np.float32) * a + np.asarray(key, np.float32) * (1.0 - a)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _matte_frame(rgb: np.ndarray, key_rgb: np.ndarray, key_lab: np.ndarray, core_thresh: float) -> np.ndarray:
    f = rgb.astype(np.float32)
    dist = np.linalg.norm(_lab(rgb) - key_lab, axis=2)
    core = (dist >= core_thresh).astype(np.float32)
    core = cv2.morphologyEx(core, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))  # specks of noise
    # Foreground colour near each edge pixel: normalised blur of the opaque core's colours.
    weight = cv2.blur(core, (7, 7))
    fg = cv2.blur(f * core[..., None], (7, 7)) / np.maximum(weight, 1e-4)[..., None]
    fg = np.where(weight[..., None] > 1e-3, fg, f)
    d_fg = fg - key_rgb
    denom = np.maximum((d_fg * d_fg).sum(axis=2), 1.0)
    alpha = ((f - key_rgb) * d_fg).sum(axis=2) / denom
    # Soft Lab thresholds: pure key is 0, clear character is 1, the ramp in between is the projection.
    soft = np.clip((dist - NOISE_DISTANCE) / max(core_thresh - NOISE_DISTANCE, 1.0), 0.0, 1.0)
    alpha = np.where(core > 0, 1.0, np.clip(alpha, 0.0, 1.0) * (soft > 0))
    alpha = np.where(weight > 1e-3, alpha, soft * 0)  # far from any character pixel: background
    # Decontaminate: remove the key's share from edge colours (no green halo on any background).
    a3 = np.maximum(alpha, 1e-3)[..., None]
    clean = (f - (1.0 - alpha[..., None]) * key_rgb) / a3
    edge = (alpha > 0) & (alpha < 1)
    colour = np.where(edge[..., None], np.clip(clean, 0, 255) * 0.5 + np.clip(fg, 0, 255) * 0.5, f)
    colour = np.where(alpha[..., None] > 0, colour, 0)
    out = np.empty(rgb.shape[:2] + (4,), np.uint8)
    out[..., :3] = np.clip(np.round(colour), 0, 255)
    out[..., 3] = np.clip(np.round(alpha * 255), 0, 255)
    return out


def key_matte(frames_rgb: np.ndarray, key: tuple[int, int, int]) -> np.ndarray:
    """(N, H, W, 4) uint8: RGBA frames recovered from frames over a flat key colour."""
    key_rgb = np.asarray(key, np.float32)
    key_lab = _lab(np.array(key, np.uint8).reshape(1, 1, 3)).reshape(3)
    # The opaque threshold adapts to the video: a share of how far the character's colours are
    # from the key (measured on the first frame), never below a safe floor.
    first = np.linalg.norm(_lab(frames_rgb[0]) - key_lab, axis=2)
    far = first[first > 2 * NOISE_DISTANCE]
    reach = float(np.percentile(far, 5)) if len(far) else 40.0
    core_thresh = float(np.clip(CORE_DISTANCE * reach, 3 * NOISE_DISTANCE, 60.0))
    return np.stack([_matte_frame(frame, key_rgb, key_lab, core_thresh) for frame in frames_rgb])
