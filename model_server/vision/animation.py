"""The "animate" stage: a seamless loop of the cut-out character, rigged and driven by a motion clip.

The cut-out becomes a 2-D rig (``rig``: a mesh over its silhouette, bones from the pose
landmarks, smooth skinning weights) and a motion clip (``motions``: joint angles and body moves
over the loop phase, periodic by construction) poses it frame by frame: bones turn about their
joints, the body squashes, tilts and lifts about its feet, and the lowest point of the body is
kept on the ground line unless the clip lifts it (a jump). Blinks swap in a copy of the texture
with eyelids drawn over the eyes (from the landmarks).

Before anything is drawn, every frame's mesh is checked: a pose that would flip or collapse a
triangle is eased toward the photo's own pose (one factor for the whole loop, so the motion
stays smooth) until no triangle flips. The character is then placed once on the square canvas,
as large as its motion allows (the deformed mesh of every frame fits inside the margin), and
each frame is one rasterised mesh sampling the texture once (``rig.Renderer``).

Subjects without a pose (a toy, a pet) are rigged with a single root bone and move with the
object clips: bounce, squash, sway, and a waddle for the walk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from model_server.vision import motions
from model_server.vision.rig import Renderer, Rig, bone_transforms, build_rig, deform, flipped, premultiplied, texture_atlas

MOTIONS = motions.MOTIONS
WALK = "walk"
FIT_HEIGHT = 0.84  # share of the canvas height the character fills at rest, unless its motion needs room
FIT_WIDTH = 0.90
MARGIN = 0.02  # share of the canvas kept clear around everything the motion ever covers
EASE_ROUNDS = 12  # 0.7 ** 6 < 0.15: within 7 rounds a bone is eased to nothing


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


def _angle(v: np.ndarray) -> float:
    return math.degrees(math.atan2(float(v[1]), float(v[0])))


def _wrap(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


def _rest_angles(rig: Rig) -> dict[str, float]:
    """The photo's own arm angles in the clips' units: shoulder raise (outward from hanging along
    the body) and elbow bend."""
    if not rig.has("spine"):
        return {}
    spine = rig.bones[rig.bone_index["spine"]]
    down = spine.head - spine.tail
    out = {}
    for side in ("left", "right"):
        if rig.has(f"{side}_shoulder"):
            upper = rig.bones[rig.bone_index[f"{side}_shoulder"]]
            out[f"{side}_shoulder"] = -upper.side * _wrap(_angle(upper.tail - upper.head) - _angle(down))
            if rig.has(f"{side}_elbow"):
                fore = rig.bones[rig.bone_index[f"{side}_elbow"]]
                out[f"{side}_elbow"] = -upper.side * _wrap(_angle(fore.tail - fore.head) - _angle(upper.tail - upper.head))
    return out


def _free_arm(rig: Rig) -> str | None:
    """The arm to wave: the one whose hand (or elbow, for an arm rigged to the elbow) is highest."""
    arms = []
    for side in ("left", "right"):
        for part in ("elbow", "shoulder"):
            if rig.has(f"{side}_{part}"):
                arms.append((rig.bones[rig.bone_index[f"{side}_{part}"]].tail[1], side))
                break
    return min(arms)[1] if arms else None


def _rotations(rig: Rig, values: dict[str, float], clip: motions.Clip, rest: dict[str, float]) -> dict[str, float]:
    """Image-plane rotation (degrees) of each bone about its joint for one frame's channel values."""
    def value(name: str) -> float:
        v = values.get(name, 0.0)
        return v - rest.get(name, 0.0) if name in clip.absolute else v

    rot = {"spine": values.get("spine", 0.0), "neck": values.get("neck", 0.0)}
    for bone in rig.bones:
        name, s = bone.name, bone.side
        if name.endswith("_shoulder") or name.endswith("_hip"):
            # Raising outward turns an image-right limb counter-clockwise on screen (negative here).
            rot[name] = -s * value(name) - values.get(f"{name}_swing", 0.0)
        elif name.endswith("_elbow"):
            rot[name] = -s * value(name)
        elif name.endswith("_knee"):
            rot[name] = values.get(name, 0.0)  # the shin swings back, away from the walking direction
    for side in ("left", "right"):
        if rig.has(f"{side}_ankle"):
            # Feet stay level with the pelvis: a swinging foot lifts flat instead of digging its toe in.
            rot[f"{side}_ankle"] = -(rot.get(f"{side}_hip", 0.0) + rot.get(f"{side}_knee", 0.0))
    return rot


def _body(values: dict[str, float], feet: np.ndarray) -> np.ndarray:
    """3x3 of the body move about the feet: squash and stretch (volume kept), then tilt."""
    sy = 1.0 - values.get("squash", 0.0)
    sx = 1.0 / sy
    scale = np.array([[sx, 0, feet[0] * (1 - sx)], [0, sy, feet[1] * (1 - sy)], [0, 0, 1]])
    a = math.radians(values.get("tilt", 0.0))
    c, s = math.cos(a), math.sin(a)
    turn = np.array([[c, -s, feet[0] - c * feet[0] + s * feet[1]], [s, c, feet[1] - s * feet[0] - c * feet[1]], [0, 0, 1]])
    return turn @ scale


@dataclass
class Performance:
    """A clip played on a rig: the mesh of every frame, in the cut-out's pixels."""

    vertices: np.ndarray  # (N, V, 2)
    ease: dict[str, float]  # per bone, the share of the clip's motion kept so that no triangle flips
    raw_flips: int  # triangles (summed over frames) the full clip would have flipped
    flips: int  # triangles flipped in the frames actually rendered (0 by construction)
    values: list[dict[str, float]]  # the clip's channel values per frame


def perform(rig: Rig, clip: motions.Clip, seconds: float, n: int, mirror: bool = False) -> Performance:
    """Pose the rig for each of ``n`` frames of a ``seconds`` loop of ``clip``."""
    values = motions.sample(clip, seconds, n)
    if mirror:
        values = [motions.mirrored(v) for v in values]
    rest = _rest_angles(rig)
    sole_x = float(rig.vertices[rig.soles, 0].mean())
    feet = np.array([sole_x, rig.ground])
    turns = [_rotations(rig, v, clip, rest) for v in values]
    ease = {bone.name: 1.0 for bone in rig.bones}
    raw_flips = None
    for _ in range(EASE_ROUNDS):
        frames = np.stack([_pose(rig, {k: ease.get(k, 0.0) * a for k, a in t.items()}, v, feet) for t, v in zip(turns, values)])
        bad = np.zeros(len(rig.triangles), bool)
        for f in frames:
            bad |= flipped(rig, f)
        flips = int(sum(flipped(rig, f).sum() for f in frames)) if raw_flips is None or bad.any() else 0
        raw_flips = flips if raw_flips is None else raw_flips
        if not bad.any():
            break
        # Ease the bones that move the flipped triangles (one factor per bone for the whole loop,
        # so the motion stays smooth); a bone eased to nothing stays at the photo's pose.
        involved = rig.weights[np.unique(rig.triangles[bad])].max(axis=0) > 0.2
        for j in np.nonzero(involved)[0]:
            name = rig.bones[j].name
            ease[name] = 0.0 if ease[name] < 0.15 else ease[name] * 0.7
    else:
        ease = dict.fromkeys(ease, 0.0)
        frames = np.stack([_pose(rig, {}, v, feet) for v in values])
        flips = int(sum(flipped(rig, f).sum() for f in frames))
    return Performance(frames, ease, raw_flips, flips, values)


def _pose(rig: Rig, rotations: dict[str, float], values: dict[str, float], feet: np.ndarray) -> np.ndarray:
    moved = deform(rig, bone_transforms(rig, rotations, _body(values, feet)))
    # The lowest point stands on the ground; the clip's lift and shift come on top.
    moved[:, 1] += rig.ground - moved[:, 1].max() - values.get("lift", 0.0) * rig.height
    moved[:, 0] += values.get("shift", 0.0) * rig.height
    return moved


def _blink_frames(n: int, fps: int) -> set[int]:
    return {int(n * f) + d for f in (0.31, 0.77) for d in range(max(1, round(fps * 0.12)))}


def render(rgba: np.ndarray, meta: dict, performance: Performance, rig: Rig, size: int, fps: int) -> np.ndarray:
    """(N, size, size, 4) uint8 frames of a performance, the character as large as its motion allows."""
    verts = performance.vertices
    n = len(verts)
    frames = np.zeros((n, size, size, 4), np.uint8)
    lo, hi = verts.reshape(-1, 2).min(axis=0), verts.reshape(-1, 2).max(axis=0)
    rest_lo, rest_hi = rig.vertices.min(axis=0), rig.vertices.max(axis=0)
    room = (1.0 - 2 * MARGIN) * size - 4
    scale = min(FIT_HEIGHT * size / max(rest_hi[1] - rest_lo[1], 1.0), FIT_WIDTH * size / max(rest_hi[0] - rest_lo[0], 1.0),
                room / max(hi[0] - lo[0], 1.0), room / max(hi[1] - lo[1], 1.0))
    offset = np.array([size / 2, size / 2]) - scale * (lo + hi) / 2

    lm = _usable_landmarks(rgba, meta)
    closed_rgb = _closed_eyes(rgba[..., :3], rgba[..., 3], lm)
    sources = [rgba] if closed_rgb is None else [rgba, np.dstack([closed_rgb, rgba[..., 3]])]
    # A smaller character is resampled once to its size (area filter: no aliasing); a larger one
    # is sampled straight from the cut-out.
    tex_scale = scale if scale < 1 else 1.0
    textures = []
    for src in sources:
        tex = premultiplied(texture_atlas(src, rig))
        if tex_scale < 1:
            tex = cv2.resize(tex, None, fx=tex_scale, fy=tex_scale, interpolation=cv2.INTER_AREA)
        textures.append(tex)
    renderer = Renderer(rig, textures[0], tex_scale, size)
    blinks = _blink_frames(n, fps) if len(textures) > 1 else set()
    # A loop of whole beats repeats its poses every beat: each distinct pose (to a thousandth of a
    # pixel) is drawn once and copied to the frames that repeat it.
    drawn: dict[tuple[bytes, bool], int] = {}
    for i in range(n):
        placed = verts[i] * scale + offset
        pose = (np.round(placed, 3).tobytes(), i in blinks)
        if pose in drawn:
            frames[i] = frames[drawn[pose]]
            continue
        drawn[pose] = i
        renderer.render(placed, frames[i], textures[1] if i in blinks else None)
    return frames


def iter_loops(rgba: np.ndarray, meta: dict, names: tuple[str, ...], seconds: float = 5.0, fps: int = 24,
               size: int = 512) -> Iterator[tuple[str, np.ndarray]]:
    """(motion name, (N, size, size, 4) uint8 RGBA frames of a seamless loop) for each name, in
    order, as each is rendered; N = round(seconds * fps).

    One rig serves every loop; each loop is placed on its own canvas as large as its motion allows.
    """
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError("animate expects an RGBA cut-out")
    n = max(1, round(seconds * fps))
    if not (rgba[..., 3] > 0).any():
        for name in dict.fromkeys(names):
            yield name, np.zeros((n, size, size, 4), np.uint8)
        return
    rig = build_rig(rgba, meta)
    mirror = _free_arm(rig) == "right"
    for name in dict.fromkeys(names):
        performance = perform(rig, motions.clip_for(name, rig.has("spine")), seconds, n, mirror=mirror)
        yield name, render(rgba, meta, performance, rig, size, fps)


def animate_loops(rgba: np.ndarray, meta: dict, names: tuple[str, ...], seconds: float = 5.0, fps: int = 24,
                  size: int = 512) -> dict[str, np.ndarray]:
    """Motion name -> (N, size, size, 4) uint8 RGBA frames of a seamless loop (see :func:`iter_loops`)."""
    return dict(iter_loops(rgba, meta, names, seconds, fps, size))


def animate(rgba: np.ndarray, meta: dict, motion: str, seconds: float = 5.0, fps: int = 24, size: int = 512) -> np.ndarray:
    """(N, size, size, 4) uint8 RGBA frames of a seamless loop of ``motion``, N = round(seconds * fps)."""
    return animate_loops(rgba, meta, (motion,), seconds, fps, size)[motion]
