"""The "animate" stage: a seamless procedural loop of the cut-out character.

Every motion is a sum of periodic functions of the loop phase with whole numbers of cycles, so
frame N would equal frame 0 and the loop never jumps. The character is placed once on a square
canvas, as large as its motion allows (the outline is run through every frame first, so no
frame ever clips), then each frame applies a global transform
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
FIT_HEIGHT = 0.84  # share of the canvas height the character fills at rest, unless its motion needs room
FIT_WIDTH = 0.90
MARGIN = 0.02  # share of the canvas kept clear around everything the motion ever covers


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


def _wave_arms(lm: dict, visibility: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """(shoulder, hand) of the arms that may wave, the higher hand first (usually the free one).

    The hand is the wrist, or the elbow when the wrist was not clearly seen (a guessed wrist can
    sit anywhere, e.g. on the background); an arm with neither clearly seen does not wave. Nor
    does a hand at the face (holding a camera, a phone): turning it would drag the face along.
    """
    face = None
    if all(k in lm for k in ("nose", "left_eye", "right_eye")):
        # Head size: the eye gap shrinks to nothing in profile, so the shoulders and ears vouch too.
        reach = [2.5 * float(np.linalg.norm(lm["left_eye"] - lm["right_eye"]))]
        if "left_shoulder" in lm and "right_shoulder" in lm:
            reach.append(0.6 * float(np.linalg.norm(lm["left_shoulder"] - lm["right_shoulder"])))
        reach += [1.5 * float(np.linalg.norm(lm[ear] - lm["nose"])) for ear in ("left_ear", "right_ear") if ear in lm]
        face = (lm["nose"], max(reach))
    arms = []
    for side in ("right", "left"):
        shoulder = lm.get(f"{side}_shoulder")
        joints = [lm[f"{side}_{j}"] for j in ("wrist", "elbow")
                  if f"{side}_{j}" in lm and visibility.get(f"{side}_{j}", 1.0) >= 0.5]
        if shoulder is None or not joints:
            continue
        hand = joints[0]
        if face is not None and float(np.linalg.norm(hand - face[0])) < face[1]:
            continue
        arms.append((shoulder, hand))
    return sorted(arms, key=lambda arm: arm[1][1])


def _arm_rig(lm: dict, visibility: dict, char_h: float):
    """(shoulder, raise sign, weight function) of the arm to wave, in the landmarks' coordinates, or None.

    The weight is 1 on the arm, fading to 0 at the shoulder and away from the arm's line: the
    torso stays. It is a closed form of the position, evaluated wherever it is needed; Python
    floats as coefficients keep the per-pixel arithmetic in float32. An arm whose weight reaches
    the face is not used (the head would swing with it).
    """
    for shoulder, hand in _wave_arms(lm, visibility):
        rig = _one_arm_rig(shoulder, hand, char_h)
        face = [lm[k] for k in ("nose", "left_eye", "right_eye", "left_ear", "right_ear") if k in lm]
        if not face or float(rig[2](*np.asarray(face, np.float64).T).max()) < 0.05:
            return rig
    return None


def _one_arm_rig(shoulder: np.ndarray, hand: np.ndarray, char_h: float):
    arm_vec = hand - shoulder
    arm_len = max(float(np.linalg.norm(arm_vec)), 0.1 * char_h)
    arm_dir = arm_vec / max(float(np.linalg.norm(arm_vec)), 1e-6)
    # Raise the arm towards the side it points to (a wave is above the shoulder, not down by the hip).
    raise_sign = -1.0 if arm_dir[0] < 0 else 1.0
    along_xy = [float(v) / (0.35 * arm_len) for v in
                (arm_dir[0], arm_dir[1], -arm_dir[0] * shoulder[0] - arm_dir[1] * shoulder[1])]
    across_xy = [float(v) / (0.45 * arm_len) for v in
                 (-arm_dir[1], arm_dir[0], arm_dir[1] * shoulder[0] - arm_dir[0] * shoulder[1])]
    # In along's units: the weight fades out from 1.0 to 1.25 arm lengths, so a leg below a
    # hanging hand stays on the ground.
    hand_end, hand_fade = 1.0 / 0.35, 0.25 / 0.35

    def arm_weight(ux: np.ndarray, uy: np.ndarray) -> np.ndarray:
        along = along_xy[0] * ux + along_xy[1] * uy + along_xy[2]
        beyond = 1.0 - np.clip((along - hand_end) * (1.0 / hand_fade), 0, 1)
        along = np.clip(along, 0, 1) * beyond
        across = across_xy[0] * ux + across_xy[1] * uy + across_xy[2]
        return along * along * np.exp(-across * across)

    return shoulder, raise_sign, arm_weight


def _motion_envelope(points: np.ndarray, feet: np.ndarray, char_h: float, rig, motion: str, n: int,
                     cycles: int) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) covered by ``points`` (the outline) over all ``n`` frames of the motion.

    Every frame's move is the one the renderer applies: the body affine about the feet and the
    arm rotation, whose forward map is the fixed point of the renderer's inverse map
    (p = s + R(-a w(u)) (u - s)  <=>  u = s + R(a w(u)) (p - s)). All frames at once, as arrays.
    """
    params = np.array([_motion_at(motion, i, n, cycles, char_h, rig is not None, 1.0 if rig is None else rig[1])
                       for i in range(n)], np.float64)
    px, py = points[:, 0][None, :], points[:, 1][None, :]
    ux, uy = np.repeat(px, n, axis=0), np.repeat(py, n, axis=0)
    if rig is not None and params[:, 4].any():
        shoulder, _, arm_weight = rig
        rx, ry = px - shoulder[0], py - shoulder[1]
        arm = np.radians(params[:, 4])[:, None]
        for _ in range(6):
            a = arm * arm_weight(ux, uy)
            ca, sa = np.cos(a), np.sin(a)
            ux, uy = shoulder[0] + ca * rx - sa * ry, shoulder[1] + sa * rx + ca * ry
    lo = np.array([np.inf, np.inf])
    hi = -lo
    for i, (lift, squash, angle, shift, _) in enumerate(params):
        m = _body_transform(feet, lift, squash, angle, shift)
        x = m[0, 0] * ux[i] + m[0, 1] * uy[i] + m[0, 2]
        y = m[1, 0] * ux[i] + m[1, 1] * uy[i] + m[1, 2]
        lo = np.minimum(lo, [x.min(), y.min()])
        hi = np.maximum(hi, [x.max(), y.max()])
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


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
    cycles = max(1, round(seconds))  # about one beat per second, whole cycles for a seamless loop

    # Every move is proportional to the character's size about its feet, so the room the motion
    # needs is measured once at the cut-out's own scale (its outline run through every frame) and
    # the placement scales it to the canvas: as large as FIT_HEIGHT asks, smaller only if the
    # motion would otherwise leave the frame.
    feet_src = np.array([(x0 + x1) / 2, float(y1)])
    outline, _ = cv2.findContours((rgba[..., 3] > 8).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    points = np.concatenate([c.reshape(-1, 2) for c in outline]).astype(np.float64)
    points = points[:: max(1, len(points) // 1500)]
    visibility = meta.get("visibility", {})
    src_rig = _arm_rig(lm, visibility, float(y1 - y0)) if motion in ("wave", "dance") else None
    ex0, ey0, ex1, ey1 = _motion_envelope(points, feet_src, float(y1 - y0), src_rig, motion, n, cycles)
    ex0, ey0, ex1, ey1 = min(ex0, x0), min(ey0, y0), max(ex1, x1), max(ey1, y1)
    room = (1.0 - 2 * MARGIN) * size - 4  # bilinear sampling spreads the outline by a pixel or two
    scale = min(FIT_HEIGHT * size / (y1 - y0), FIT_WIDTH * size / (x1 - x0), room / (ex1 - ex0), room / (ey1 - ey0))

    # Place the character once, the motion's box centred on the canvas. Per-frame warps then stay small.
    offset = np.array([size / 2 - scale * (ex0 + ex1) / 2, size / 2 - scale * (ey0 + ey1) / 2])
    place = np.array([[scale, 0, offset[0]], [0, scale, offset[1]]], np.float64)
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
    feet = to_canvas(feet_src)
    rig = _arm_rig(lm_c, visibility, char_h) if src_rig is not None else None
    arm = rig
    raise_sign = 1.0
    if rig is not None:
        shoulder, raise_sign, arm_weight = rig
        # Where a rotated arm can reach: a square about the shoulder holding every moving pixel.
        grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
        gy, gx = grid_y[sy0:sy1, sx0:sx1], grid_x[sy0:sy1, sx0:sx1]
        moving = (arm_weight(gx, gy) > 1e-3) & (crops[0][..., 3] > 0)
        reach = float(np.sqrt(((gx[moving] - shoulder[0]) ** 2 + (gy[moving] - shoulder[1]) ** 2).max())) + 2 if moving.any() else 0.0
        arm_box = (shoulder[0] - reach, shoulder[1] - reach, shoulder[0] + reach, shoulder[1] + reach)

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
