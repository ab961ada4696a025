"""The "animate" stage: a seamless procedural loop of the cut-out character.

Every motion is a sum of periodic functions of the loop phase with whole numbers of cycles, so
frame N would equal frame 0 and the loop never jumps. The character is placed once on a square
canvas (feet near the bottom, headroom for jumps), then each frame applies a global transform
about the feet (bounce, squash and stretch, sway), an optional arm rotation about the shoulder
(wave, dance) and blinks (eyes from the landmarks). Warping is done on premultiplied alpha so
edges never pick up dark fringes.

Speed: only the box around the placed character is warped (one ``cv2.warpAffine`` per frame);
the arm's local rotation is a ``cv2.remap`` over that frame's box alone, with its weight in
closed form; the rest of each frame stays transparent.
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


def _motion_at(motion: str, i: int, n: int, cycles: int, char_h: float, has_arm: bool,
               raise_sign: float) -> tuple[float, float, float, float, float]:
    """(lift px, squash, angle deg, shift px, arm angle deg) of frame ``i`` of ``n``."""
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
        arm_angle = raise_sign * (70.0 + 22.0 * math.sin(2 * beat)) if has_arm else 0.0
        angle = 2.0 * math.sin(theta)
    elif motion == "dance":
        angle = 8.0 * math.sin(beat)
        shift = 0.06 * char_h * math.sin(beat)
        lift = 0.05 * char_h * abs(math.sin(beat))
        squash = 0.04 * math.cos(2 * beat)
        arm_angle = raise_sign * (45.0 + 35.0 * math.sin(2 * beat)) if has_arm else 0.0
    return lift, squash, angle, shift, arm_angle


def _body_transform(feet: np.ndarray, lift: float, squash: float, angle: float, shift: float) -> np.ndarray:
    """2x3 affine (placed character -> frame): squash/stretch and rotation about the feet, then move."""
    sy = 1.0 - squash
    sx = 1.0 / sy  # squash and stretch keep the volume
    rot = cv2.getRotationMatrix2D((float(feet[0]), float(feet[1])), angle, 1.0)
    scl = np.array([[sx, 0, feet[0] * (1 - sx)], [0, sy, feet[1] * (1 - sy)]], np.float64)
    m = rot @ np.vstack([scl, [0, 0, 1]])
    m[0, 2] += shift
    m[1, 2] -= lift
    return m


def _box_after(m: np.ndarray, box: tuple[float, float, float, float], size: int) -> tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1) on the canvas holding ``box`` after the affine ``m`` (1 px margin)."""
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ m.T
    lo = np.floor(corners.min(axis=0)) - 1
    hi = np.ceil(corners.max(axis=0)) + 2
    return (int(max(0, lo[0])), int(max(0, lo[1])), int(min(size, hi[0])), int(min(size, hi[1])))


def _unpremultiply_into(warped: np.ndarray, dest: np.ndarray) -> None:
    """Write float premultiplied RGBA as straight uint8 RGBA (rounded, saturated)."""
    alpha = np.ascontiguousarray(warped[..., 3])
    gain = 255.0 / np.maximum(alpha, 1e-3)
    # One 4-channel multiply by (gain, gain, gain, 1) and one saturating conversion.
    dest[...] = cv2.convertScaleAbs(cv2.multiply(warped, cv2.merge([gain, gain, gain, np.ones_like(gain)])))


def animate(rgba: np.ndarray, meta: dict, motion: str, seconds: float = 5.0, fps: int = 24, size: int = 512) -> np.ndarray:
    """(N, size, size, 4) uint8 RGBA frames of a seamless loop, N = round(seconds * fps)."""
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError("animate expects an RGBA cut-out")
    motion = motion if motion in MOTIONS else "bounce"
    n = max(1, round(seconds * fps))
    lm = _usable_landmarks(rgba, meta)
    ys, xs = np.nonzero(rgba[..., 3] > 8)
    frames = np.zeros((n, size, size, 4), np.uint8)
    if len(xs) == 0:
        return frames
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    scale = min(FIT_HEIGHT * size / (y1 - y0), FIT_WIDTH * size / (x1 - x0))

    # Place the character once: scaled, feet centred on the feet line. Per-frame warps then stay small.
    place = np.array([[scale, 0, size / 2 - scale * (x0 + x1) / 2], [0, scale, FEET_Y * size - scale * y1]], np.float64)
    place_flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    closed_rgb = _closed_eyes(rgba[..., :3], rgba[..., 3], lm)
    sources = [rgba] if closed_rgb is None else [rgba, np.dstack([closed_rgb, rgba[..., 3]])]
    layers = [cv2.warpAffine(_premultiplied(src), place, (size, size), flags=place_flags) for src in sources]

    # Only the box around the placed character is ever warped; a zero margin around it keeps
    # bilinear sampling at its edge the same as sampling the whole canvas.
    visible = np.argwhere(layers[0][..., 3] > 0)
    if len(visible) == 0:
        return frames
    (by0, bx0), (by1, bx1) = visible.min(axis=0), visible.max(axis=0) + 1
    sx0, sy0, sx1, sy1 = max(0, bx0 - 2), max(0, by0 - 2), min(size, bx1 + 2), min(size, by1 + 2)
    crops = [np.ascontiguousarray(layer[sy0:sy1, sx0:sx1]) for layer in layers]
    src_box = (float(bx0), float(by0), float(bx1), float(by1))

    def to_canvas(p):
        return place[:, :2] @ p + place[:, 2]

    lm_c = {k: to_canvas(v) for k, v in lm.items()}
    char_h = scale * (y1 - y0)
    feet = np.array([size / 2, FEET_Y * size])
    arm = _wave_arm(lm_c) if motion in ("wave", "dance") else None
    raise_sign = 1.0
    if arm is not None:
        shoulder, hand = arm
        arm_vec = hand - shoulder
        arm_len = max(float(np.linalg.norm(arm_vec)), 0.1 * char_h)
        arm_dir = arm_vec / max(float(np.linalg.norm(arm_vec)), 1e-6)
        # Raise the arm towards the side it points to (a wave is above the shoulder, not down by the hip).
        raise_sign = -1.0 if arm_dir[0] < 0 else 1.0
        # Weight 1 on the arm, fading to 0 at the shoulder and away from the arm's line: the torso
        # stays. It is a closed form of the placed-canvas position, evaluated wherever it is needed.
        # Python floats as coefficients keep the per-pixel arithmetic in float32.
        along_xy = [float(v) / (0.35 * arm_len) for v in
                    (arm_dir[0], arm_dir[1], -arm_dir[0] * shoulder[0] - arm_dir[1] * shoulder[1])]
        across_xy = [float(v) / (0.45 * arm_len) for v in
                     (-arm_dir[1], arm_dir[0], arm_dir[1] * shoulder[0] - arm_dir[0] * shoulder[1])]

        def arm_weight(ux: np.ndarray, uy: np.ndarray) -> np.ndarray:
            along = np.clip(along_xy[0] * ux + along_xy[1] * uy + along_xy[2], 0, 1)
            across = across_xy[0] * ux + across_xy[1] * uy + across_xy[2]
            return along * along * np.exp(-across * across)

        # Where a rotated arm can reach: a square about the shoulder holding every moving pixel.
        grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
        gy, gx = grid_y[sy0:sy1, sx0:sx1], grid_x[sy0:sy1, sx0:sx1]
        moving = (arm_weight(gx, gy) > 1e-3) & (crops[0][..., 3] > 0)
        reach = float(np.sqrt(((gx[moving] - shoulder[0]) ** 2 + (gy[moving] - shoulder[1]) ** 2).max())) + 2 if moving.any() else 0.0
        arm_box = (shoulder[0] - reach, shoulder[1] - reach, shoulder[0] + reach, shoulder[1] + reach)

    cycles = max(1, round(seconds))  # about one beat per second, whole cycles for a seamless loop
    blink_frames = {int(n * f) + d for f in (0.31, 0.77) for d in range(max(1, round(fps * 0.12)))}
    for i in range(n):
        lift, squash, angle, shift, arm_angle = _motion_at(motion, i, n, cycles, char_h, arm is not None, raise_sign)
        m = _body_transform(feet, lift, squash, angle, shift)
        src = crops[1] if len(crops) > 1 and i in blink_frames else crops[0]
        dx0, dy0, dx1, dy1 = _box_after(m, src_box, size)
        if arm is not None and arm_angle:
            ax0, ay0, ax1, ay1 = _box_after(m, arm_box, size)
            dx0, dy0, dx1, dy1 = min(dx0, ax0), min(dy0, ay0), max(dx1, ax1), max(dy1, ay1)
        if dx1 <= dx0 or dy1 <= dy0:
            continue
        if arm is not None and arm_angle:
            # Inverse map: frame -> placed character (undo the body move), then undo the arm rotation.
            inv = [[float(v) for v in row] for row in cv2.invertAffineTransform(m)]
            yy, xx = grid_y[dy0:dy1, dx0:dx1], grid_x[dy0:dy1, dx0:dx1]
            ux = inv[0][0] * xx + inv[0][1] * yy + inv[0][2]
            uy = inv[1][0] * xx + inv[1][1] * yy + inv[1][2]
            a = -math.radians(arm_angle) * arm_weight(ux, uy)
            ca, sa = np.cos(a), np.sin(a)
            rx, ry = ux - float(shoulder[0]), uy - float(shoulder[1])
            # Sampling positions inside the source crop (the crop starts at sx0, sy0).
            mx = float(shoulder[0] - sx0) + ca * rx - sa * ry
            my = float(shoulder[1] - sy0) + sa * rx + ca * ry
            warped = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        else:
            # The same affine, re-based from canvas to crop coordinates on both sides.
            local = m.copy()
            local[:, 2] += m[:, 0] * sx0 + m[:, 1] * sy0 - np.array([dx0, dy0], np.float64)
            warped = cv2.warpAffine(src, local, (dx1 - dx0, dy1 - dy0), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        _unpremultiply_into(warped, frames[i, dy0:dy1, dx0:dx1])
    return frames
