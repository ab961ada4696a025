"""The "animate" stage: a seamless procedural loop of the cut-out character.

Every motion is a sum of periodic functions of the loop phase with whole numbers of cycles, so
frame N would equal frame 0 and the loop never jumps. The character is placed once on a square
canvas (feet near the bottom, headroom for jumps), then each frame applies a global transform
about the feet (bounce, squash and stretch, sway), an optional arm rotation about the shoulder
(wave, dance) and blinks (eyes from the landmarks). Warping is done on premultiplied alpha so
edges never pick up dark fringes.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MOTIONS = ("bounce", "wave", "jump", "dance", "sway")
FIT_HEIGHT = 0.70  # share of the canvas the character's height fills (headroom for jumps)
FIT_WIDTH = 0.78
FEET_Y = 0.95  # feet line as a share of the canvas height


def _usable_landmarks(rgba: np.ndarray, meta: dict) -> dict[str, np.ndarray]:
    """Landmarks only if they are in this image's coordinates (meta["size"] matches)."""
    h, w = rgba.shape[:2]
    if list(meta.get("size", [])) != [w, h]:
        return {}
    return {k: np.array(v, np.float64) for k, v in meta.get("landmarks", {}).items()}


def _closed_eyes(rgb: np.ndarray, alpha: np.ndarray, lm: dict) -> np.ndarray | None:
    """A copy with eyelids drawn over both eyes (skin colour from just above each eye)."""
    if "left_eye" not in lm or "right_eye" not in lm:
        return None
    gap = float(np.linalg.norm(lm["left_eye"] - lm["right_eye"]))
    if gap < 4:
        return None
    out = rgb.copy()
    h, w = rgb.shape[:2]
    rx, ry = max(2, int(gap * 0.3)), max(2, int(gap * 0.17))
    for name in ("left_eye", "right_eye"):
        x, y = lm[name]
        sx, sy = int(np.clip(x, 0, w - 1)), int(np.clip(y - gap * 0.42, 0, h - 1))
        if alpha[sy, sx] < 128:
            return None
        patch = rgb[max(0, sy - 2):sy + 3, max(0, sx - 2):sx + 3].reshape(-1, 3)
        skin = tuple(int(v) for v in np.median(patch, axis=0))
        centre = (int(round(x)), int(round(y)))
        cv2.ellipse(out, centre, (rx, ry), 0, 0, 360, skin, -1, cv2.LINE_AA)
        cv2.ellipse(out, centre, (rx, ry), 0, 10, 170, (40, 30, 40), max(1, int(gap * 0.05)), cv2.LINE_AA)
    return out


def _wave_arm(lm: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Shoulder and hand of the arm to wave: the one whose hand is higher (usually the free one)."""
    best = None
    for side in ("right", "left"):
        s, e, wr = lm.get(f"{side}_shoulder"), lm.get(f"{side}_elbow"), lm.get(f"{side}_wrist")
        if s is None or (e is None and wr is None):
            continue
        hand = wr if wr is not None else e
        if best is None or hand[1] < best[1][1]:
            best = (s, hand)
    return best


def _premultiplied(rgba: np.ndarray) -> np.ndarray:
    f = rgba.astype(np.float32)
    f[..., :3] *= f[..., 3:4] / 255.0
    return f


def animate(rgba: np.ndarray, meta: dict, motion: str, seconds: float = 5.0, fps: int = 24, size: int = 512) -> np.ndarray:
    """(N, size, size, 4) uint8 RGBA frames of a seamless loop, N = round(seconds * fps)."""
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError("animate expects an RGBA cut-out")
    motion = motion if motion in MOTIONS else "bounce"
    n = max(1, round(seconds * fps))
    lm = _usable_landmarks(rgba, meta)
    ys, xs = np.nonzero(rgba[..., 3] > 8)
    if len(xs) == 0:
        return np.zeros((n, size, size, 4), np.uint8)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    scale = min(FIT_HEIGHT * size / (y1 - y0), FIT_WIDTH * size / (x1 - x0))

    # Place the character once: scaled, feet centred on the feet line. Per-frame warps then stay small.
    place = np.array([[scale, 0, size / 2 - scale * (x0 + x1) / 2], [0, scale, FEET_Y * size - scale * y1]], np.float64)
    open_src = _premultiplied(rgba)
    closed_rgb = _closed_eyes(rgba[..., :3], rgba[..., 3], lm)
    layers = [cv2.warpAffine(open_src, place, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)]
    if closed_rgb is not None:
        closed = np.dstack([closed_rgb, rgba[..., 3]])
        layers.append(cv2.warpAffine(_premultiplied(closed), place, (size, size), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))

    def to_canvas(p):
        return place[:, :2] @ p + place[:, 2]

    lm_c = {k: to_canvas(v) for k, v in lm.items()}
    char_h = scale * (y1 - y0)
    feet = np.array([size / 2, FEET_Y * size])
    arm = _wave_arm(lm_c) if motion in ("wave", "dance") else None
    if arm is not None:
        shoulder, hand = arm
        arm_vec = hand - shoulder
        arm_len = max(float(np.linalg.norm(arm_vec)), 0.1 * char_h)
        arm_dir = arm_vec / max(float(np.linalg.norm(arm_vec)), 1e-6)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        rel_x, rel_y = xx - shoulder[0], yy - shoulder[1]
        along = rel_x * arm_dir[0] + rel_y * arm_dir[1]
        across = -rel_x * arm_dir[1] + rel_y * arm_dir[0]
        # Weight 1 on the arm, fading to 0 at the shoulder and away from the arm's line: the torso stays.
        arm_weight = (np.clip(along / (0.35 * arm_len), 0, 1) ** 2 * np.exp(-(across / (0.45 * arm_len)) ** 2)).astype(np.float32)
        # Raise the arm towards the side it points to (a wave is above the shoulder, not down by the hip).
        raise_sign = -1.0 if arm_dir[0] < 0 else 1.0

    cycles = max(1, round(seconds))  # about one beat per second, whole cycles for a seamless loop
    blink_frames = {int(n * f) + d for f in (0.31, 0.77) for d in range(max(1, round(fps * 0.12)))}
    frames = np.empty((n, size, size, 4), np.uint8)
    for i in range(n):
        theta = 2.0 * math.pi * i / n
        beat = cycles * theta
        lift = 0.0  # upward offset in pixels
        squash = 0.0  # >0 squashes (wider, shorter), <0 stretches
        angle = 0.0  # degrees, about the feet
        shift = 0.0
        arm_angle = 0.0
        if motion == "bounce":
            lift = 0.04 * char_h * (0.5 - 0.5 * math.cos(beat))
            squash = 0.045 * math.cos(beat)
            angle = 1.5 * math.sin(theta)
        elif motion == "jump":
            air = max(0.0, math.sin(beat))
            lift = 0.2 * char_h * air
            squash = 0.09 * max(0.0, -math.sin(beat)) - 0.05 * air
        elif motion == "sway":
            angle = 6.0 * math.sin(beat)
            lift = 0.015 * char_h * (0.5 - 0.5 * math.cos(2 * beat))
        elif motion == "wave":
            lift = 0.02 * char_h * (0.5 - 0.5 * math.cos(beat))
            squash = 0.02 * math.cos(beat)
            arm_angle = raise_sign * (70.0 + 22.0 * math.sin(2 * beat)) if arm is not None else 0.0
            angle = 2.0 * math.sin(theta)
        elif motion == "dance":
            angle = 8.0 * math.sin(beat)
            shift = 0.06 * char_h * math.sin(beat)
            lift = 0.05 * char_h * abs(math.sin(beat))
            squash = 0.04 * math.cos(2 * beat)
            arm_angle = raise_sign * (45.0 + 35.0 * math.sin(2 * beat)) if arm is not None else 0.0
        sy = 1.0 - squash
        sx = 1.0 / sy  # squash and stretch keep the volume
        rot = cv2.getRotationMatrix2D((float(feet[0]), float(feet[1])), angle, 1.0)
        scl = np.array([[sx, 0, feet[0] * (1 - sx)], [0, sy, feet[1] * (1 - sy)]], np.float64)
        m = rot @ np.vstack([scl, [0, 0, 1]])
        m[0, 2] += shift
        m[1, 2] -= lift
        src = layers[1] if len(layers) > 1 and i in blink_frames else layers[0]
        if arm is not None and arm_angle:
            # Inverse map: canvas -> placed character (undo global), then undo the arm rotation.
            inv = cv2.invertAffineTransform(m)
            ux = (inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]).astype(np.float32)
            uy = (inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]).astype(np.float32)
            a = -np.deg2rad(arm_angle) * cv2.remap(arm_weight, ux, uy, cv2.INTER_LINEAR)
            ca, sa = np.cos(a), np.sin(a)
            dx, dy = ux - shoulder[0], uy - shoulder[1]
            mx = (shoulder[0] + ca * dx - sa * dy).astype(np.float32)
            my = (shoulder[1] + sa * dx + ca * dy).astype(np.float32)
            warped = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        else:
            warped = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = warped[..., 3:4]
        rgb = warped[..., :3] * (255.0 / np.maximum(alpha, 1e-3))  # back from premultiplied
        frames[i, ..., :3] = np.clip(rgb, 0, 255)
        frames[i, ..., 3] = np.clip(alpha[..., 0], 0, 255)
    return frames
