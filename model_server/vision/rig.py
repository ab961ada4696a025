"""A 2-D character rig: a triangle mesh over the cut-out, bones from the pose, skinning, rendering.

The mesh covers the cut-out's silhouette (a little dilated, so the soft alpha edge is inside
it): points along the simplified outline plus an interior grid, triangulated with Delaunay and
kept where a triangle lies inside the silhouette (concavities such as the gap between the legs
stay open). Bones come from the pose landmarks: pelvis (the root), spine, head, upper and lower
arms, thighs and shins; a subject without a pose (a toy, a pet) gets the pelvis alone, so the
same renderer squashes and sways it as one piece.

The arms are meshes of their own drawn over the body, each skinned to its upper and lower arm
only, so it turns about the shoulder like a paper doll's and never drags the body's skin along;
the body keeps the torso, the head and the shoulders, and what an arm covered on it is painted
over (``texture_atlas``: the cut-out beside the body alone, indexed by ``Rig.uv``).

Skinning is linear blend skinning with smooth weights: each bone claims a region (the torso
quadrilateral for the spine, a disc for the head, a segment for a limb) and a vertex's weight
falls off with its distance to that region as ``1 / (d^2 + e^2)^2``, normalised over its
nearest bone and the bones jointed to it: one bone owns a vertex deep in its region and
neighbours blend over a band of about ``e`` at the joints.

Rendering maps every output pixel back to the texture: each frame rasterises triangle ids
(back layers first: legs, then body and head, then arms), turns each triangle's
destination->source affine into per-pixel sampling positions and samples the premultiplied
texture once with ``cv2.remap``. Piecewise affine maps on a connected mesh leave no holes, and
the texture is resampled once per frame, so it stays sharp. A pose that would flip a triangle
(signed area changing sign) is eased towards rest until none flips.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial import Delaunay

# Draw order: larger layers are drawn over smaller ones.
LAYER_BACK, LAYER_BODY, LAYER_FRONT = 0, 1, 2
# The weights' blend band at joints, as a share of the shoulder width (or of the height without a pose).
BLEND_BAND = 0.2
SLIVER = 0.05  # a triangle whose area is below this share of its longest edge squared is a sliver
MIN_AREA_RATIO = 0.02  # a deformed triangle keeps at least this share of its signed rest area (0 would be a flip)


@dataclass
class Bone:
    name: str
    parent: int | None
    head: np.ndarray  # the joint it turns about, rest coordinates
    tail: np.ndarray
    layer: int
    side: float = 0.0  # +1 on the image's right of the body's midline, -1 on its left, 0 on it


@dataclass
class Rig:
    vertices: np.ndarray  # (V, 2) float64 rest positions, cut-out pixels
    triangles: np.ndarray  # (T, 3) int32, counter-clockwise in image coordinates (positive signed area)
    bones: list[Bone]
    weights: np.ndarray  # (V, B) float64, rows sum to 1
    layers: np.ndarray  # (T,) draw layer of each triangle
    soles: np.ndarray  # indices of the vertices at the bottom of the character (what stands on the ground)
    ground: float  # rest y of the ground line
    height: float  # rest height of the character
    bone_index: dict[str, int] = field(default_factory=dict)
    # Texture positions of the vertices in the atlas ``texture_atlas`` makes: the cut-out on the
    # left (arms), the body with what the arms covered painted over on the right.
    uv: np.ndarray | None = None
    under_arms: np.ndarray | None = None  # bool (H, W): cut-out pixels the free arms cover, painted over in the body
    body_alpha: np.ndarray | None = None  # uint8 (H, W): the body's alpha (the cut-out without the free arms)

    def has(self, name: str) -> bool:
        return name in self.bone_index


def _signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def flipped(rig: Rig, deformed: np.ndarray) -> np.ndarray:
    """Bool (T,): triangles whose deformed signed area fell below MIN_AREA_RATIO of the rest area
    (flipped, or so collapsed that it is about to)."""
    rest = _signed_areas(rig.vertices, rig.triangles)
    return _signed_areas(deformed, rig.triangles) < MIN_AREA_RATIO * rest


# ---- the mesh -----------------------------------------------------------------------------------

def _mesh(alpha: np.ndarray, extra_points: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, triangles) covering every pixel with alpha > 0."""
    solid = (alpha > 0).astype(np.uint8)
    # The outline runs through the centres of the pixels just outside the soft edge: every
    # visible pixel is inside, and gaps between limbs wider than ~3 px stay open.
    cover = cv2.dilate(solid, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(cover, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = []
    for contour in contours:
        if cv2.contourArea(contour) < 4:
            continue
        simple = cv2.approxPolyDP(contour, 1.0, True).reshape(-1, 2).astype(np.float64)
        # Extra points along long straight runs: short edges keep boundary triangles small.
        closed = np.vstack([simple, simple[:1]])
        for a, b in zip(closed[:-1], closed[1:]):
            steps = max(1, int(np.ceil(np.linalg.norm(b - a) / (0.6 * spacing))))
            outline.extend(a + (b - a) * t for t in np.arange(steps) / steps)
    outline = np.asarray(outline, np.float64)
    inner = cv2.erode(solid, np.ones((3, 3), np.uint8), iterations=max(1, int(spacing * 0.35)))
    h, w = alpha.shape
    gy, gx = np.mgrid[spacing / 2:h:spacing, spacing / 2:w:spacing]
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    grid = grid[inner[grid[:, 1].astype(int), grid[:, 0].astype(int)] > 0]
    extra = extra_points[(extra_points[:, 0] >= 0) & (extra_points[:, 0] < w) & (extra_points[:, 1] >= 0) & (extra_points[:, 1] < h)]
    extra = extra[inner[extra[:, 1].astype(int), extra[:, 0].astype(int)] > 0] if len(extra) else extra
    points = np.unique(np.round(np.vstack([outline, grid, extra.reshape(-1, 2)]), 2), axis=0)
    triangles = Delaunay(points).simplices.astype(np.int32)
    # Keep a triangle when its centroid and edge midpoints are inside the (dilated) silhouette.
    inside = cover
    probes = [points[triangles].mean(axis=1)] + [
        (points[triangles[:, i]] + points[triangles[:, j]]) / 2 for i, j in ((0, 1), (1, 2), (2, 0))]
    keep = np.ones(len(triangles), bool)
    for probe in probes:
        px = np.clip(np.round(probe[:, 0]).astype(int), 0, w - 1)
        py = np.clip(np.round(probe[:, 1]).astype(int), 0, h - 1)
        keep &= inside[py, px] > 0
    triangles = triangles[keep]
    areas = _signed_areas(points, triangles)
    # Slivers (three nearly collinear outline points) cover no pixel, and the smallest bend
    # would flip them: they are dropped.
    tri = points[triangles]
    longest = np.max([np.sum((tri[:, i] - tri[:, (i + 1) % 3]) ** 2, axis=1) for i in range(3)], axis=0)
    solid = np.abs(areas) > SLIVER * longest
    triangles, areas = triangles[solid], areas[solid]
    triangles[areas < 0] = triangles[areas < 0][:, [0, 2, 1]]
    used = np.unique(triangles)
    remap = np.full(len(points), -1, np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    return points[used], remap[triangles]


# ---- bones --------------------------------------------------------------------------------------

def _point(lm: dict, name: str) -> np.ndarray | None:
    return None if name not in lm else np.asarray(lm[name], np.float64)


def _skeleton(lm: dict, visibility: dict, alpha: np.ndarray) -> tuple[list[Bone], float, dict]:
    """Bones (pelvis first) from the landmarks, the shoulder width and the regions the weights need.

    Without shoulders and hips the subject has no usable pose: the pelvis alone, centred on the
    cut-out, moves it as one piece.
    """
    h, w = alpha.shape
    ys, xs = np.nonzero(alpha > 0)
    centre = np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2], np.float64)
    need = ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "nose")
    if not all(k in lm for k in need):
        bottom = np.array([centre[0], float(ys.max())])
        return [Bone("pelvis", None, bottom, centre, LAYER_BODY)], float(ys.max() - ys.min()), {}
    ls, rs, lh, rh = (_point(lm, k) for k in need[:4])
    shoulder_w = max(float(np.linalg.norm(ls - rs)), 4.0)
    neck, hip_mid = (ls + rs) / 2, (lh + rh) / 2
    midline = (neck[0] + hip_mid[0]) / 2

    def side(p: np.ndarray) -> float:
        return 1.0 if p[0] >= midline else -1.0

    nose = _point(lm, "nose")
    head_top = nose + (nose - neck) * 0.9
    bones = [Bone("pelvis", None, hip_mid.copy(), hip_mid + (neck - hip_mid) * 0.25, LAYER_BODY),
             Bone("spine", 0, hip_mid.copy(), neck.copy(), LAYER_BODY),
             Bone("neck", 1, neck.copy(), head_top, LAYER_BODY)]
    face_reach = _face_reach(lm, shoulder_w)
    for prefix in ("left", "right"):
        shoulder, elbow, wrist = (_point(lm, f"{prefix}_{j}") for j in ("shoulder", "elbow", "wrist"))
        seen = [visibility.get(f"{prefix}_{j}", 1.0) >= 0.5 for j in ("elbow", "wrist")]
        hand = wrist if wrist is not None and seen[1] else elbow
        if hand is not None and float(np.linalg.norm(hand - nose)) < face_reach:
            continue  # a hand at the face (a camera, a phone) belongs to the head: moving it would drag the face
        if elbow is not None and seen[0]:
            bones.append(Bone(f"{prefix}_shoulder", 1, shoulder, elbow, LAYER_FRONT, side(shoulder)))
            if wrist is not None and seen[1]:
                hand = wrist + (wrist - elbow) * 0.3
                bones.append(Bone(f"{prefix}_elbow", len(bones) - 1, elbow, hand, LAYER_FRONT, side(shoulder)))
    for prefix in ("left", "right"):
        hip, knee, ankle = (_point(lm, f"{prefix}_{j}") for j in ("hip", "knee", "ankle"))
        if knee is None or ankle is None or ankle[1] > h + 0.05 * shoulder_w:
            continue  # a leg below the frame (not drawn) does not exist in this cut-out
        bones.append(Bone(f"{prefix}_hip", 0, hip, knee, LAYER_BACK, side(hip)))
        bones.append(Bone(f"{prefix}_knee", len(bones) - 1, knee, ankle, LAYER_BACK, side(hip)))
        # The foot: from the ankle down to the sole, so a foot stays flat while the leg swings.
        sole = ankle + np.array([0.0, max(0.0, float(ys.max()) - ankle[1])])
        bones.append(Bone(f"{prefix}_ankle", len(bones) - 1, ankle, sole, LAYER_BACK, side(hip)))
    # The torso: shoulders to hips, as wide at the hips as at the shoulders (hip joints sit well
    # inside the body's outline, and the belly's sides belong to the torso, not to the arms).
    across = (ls - rs) / 2
    torso = np.array([ls, rs, hip_mid - across, hip_mid + across])
    middle = torso.mean(axis=0)
    regions = {"torso": middle + 0.95 * (torso - middle), "hips": (lh, rh), "head_centre": (nose + neck * 0.25) / 1.25,
               "head_radius": max(0.35 * shoulder_w, 0.6 * float(np.linalg.norm(nose - neck)))}
    return bones, shoulder_w, regions


def _face_reach(lm: dict, shoulder_w: float) -> float:
    """How far from the nose a hand counts as at the face: the head's size, from the eyes, the
    shoulders and the ears (the eye gap shrinks to nothing in profile)."""
    reach = [0.6 * shoulder_w]
    if "left_eye" in lm and "right_eye" in lm:
        reach.append(2.5 * float(np.linalg.norm(lm["left_eye"] - lm["right_eye"])))
    reach += [1.5 * float(np.linalg.norm(lm[ear] - lm["nose"])) for ear in ("left_ear", "right_ear") if ear in lm]
    return max(reach)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def _polygon_distance(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """0 inside the polygon, else the distance to its edges."""
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    signed = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points])
    return np.maximum(0.0, -signed)


def _blending(bones: list[Bone]) -> np.ndarray:
    """(B, B) bool: which bones may share a vertex: each with itself, its parent and its children.

    An arm stays joined to the torso: in most photos it rests against the body along its length,
    and cutting it free would tear the body open when it moves (tried: cracks through the
    astronaut's suit). A far swing (a wave raises an arm by 130 degrees) that would collapse
    the blended skin is eased instead (``animation.perform``)."""
    related = np.eye(len(bones), dtype=bool)
    for j, bone in enumerate(bones):
        if bone.parent is not None:
            related[j, bone.parent] = related[bone.parent, j] = True
    # The thighs meet the torso at the hips (the pelvis between them is short): a seam there
    # would open the seat of the trousers whenever a leg swings.
    names = [b.name for b in bones]
    if "spine" in names:
        for j, name in enumerate(names):
            if name.endswith("_hip"):
                related[j, names.index("spine")] = related[names.index("spine"), j] = True
    return related


def _weights(vertices: np.ndarray, bones: list[Bone], regions: dict, band: float,
             allowed: list[int] | None = None) -> np.ndarray:
    """(V, B) weights over ``bones``; only the ``allowed`` bones (all by default) get any."""
    dist = np.full((len(vertices), len(bones)), np.inf)
    for j, bone in enumerate(bones):
        if allowed is not None and j not in allowed:
            continue
        if bone.name == "spine" and "torso" in regions:
            dist[:, j] = _polygon_distance(vertices, regions["torso"])
        elif bone.name == "neck" and "head_centre" in regions:
            dist[:, j] = np.maximum(0.0, np.linalg.norm(vertices - regions["head_centre"], axis=1) - regions["head_radius"])
        elif bone.name == "pelvis" and len(bones) > 1:
            # The hips: the bottom of the torso along the line between the thighs' tops, so the
            # seat between them follows the pelvis and not one leg or the other.
            ends = regions.get("hips", (bone.head, bone.head))
            dist[:, j] = _segment_distance(vertices, *ends) + 0.5 * band
        else:
            dist[:, j] = _segment_distance(vertices, bone.head, bone.tail)
    finite = np.isfinite(dist)
    raw = np.where(finite, 1.0 / (np.where(finite, dist, 0.0) ** 2 + band * band) ** 2, 0.0)
    # A vertex blends only between its nearest bone and that bone's parent and children: a
    # shoe never follows the other leg, a hand never the thigh it rests on.
    raw *= _blending(bones)[dist.argmin(axis=1)]
    return raw / raw.sum(axis=1, keepdims=True)


def _split_seams(vertices: np.ndarray, triangles: np.ndarray, weights: np.ndarray,
                 bones: list[Bone]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut the mesh where parts that are not jointed touch (the two legs at the crotch, a hand
    resting on a thigh or at the face): such a triangle goes with the bone that owns most of it,
    through copies of its other vertices skinned to that bone alone. At rest nothing moves; in
    motion the parts separate instead of stretching the skin between them until it flips.
    Also returns, per vertex, the vertex it copies (itself for the originals)."""
    related = _blending(bones)
    dominant = weights.argmax(axis=1)
    owners = weights[triangles].sum(axis=1).argmax(axis=1)
    extra_v, extra_w, origins = [], [], []
    triangles = triangles.copy()
    copies: dict[tuple[int, int], int] = {}
    for t in np.nonzero(~related[dominant[triangles], owners[:, None]].all(axis=1))[0]:
        owner = int(owners[t])
        # The copies move like the triangle's own vertices (one-hot weights would shear it).
        kept = [int(v) for v in triangles[t] if related[dominant[v], owner]]
        skin = weights[kept].mean(axis=0) if kept else np.eye(len(bones))[owner]
        for k in range(3):
            v = int(triangles[t, k])
            if related[dominant[v], owner]:
                continue
            if (v, owner) not in copies:
                copies[(v, owner)] = len(vertices) + len(extra_v)
                extra_v.append(vertices[v])
                extra_w.append(skin)
                origins.append(v)
            triangles[t, k] = copies[(v, owner)]
    if not extra_v:
        return vertices, triangles, weights, np.arange(len(vertices))
    return (np.vstack([vertices, extra_v]), triangles, np.vstack([weights, extra_w]),
            np.concatenate([np.arange(len(vertices)), origins]).astype(np.int64))


ARM_RADIUS = 0.2  # half the thickness of an arm, as a share of the shoulder width


def _arm_masks(alpha: np.ndarray, bones: list[Bone], regions: dict, shoulder_w: float) -> dict[str, np.ndarray]:
    """Side -> bool mask of the cut-out's pixels that belong to that arm: within ARM_RADIUS of its
    bones (shoulder -> elbow -> hand)."""
    out = {}
    r = max(2, int(round(ARM_RADIUS * shoulder_w)))
    for side in ("left", "right"):
        chain = [b for b in bones if b.name in (f"{side}_shoulder", f"{side}_elbow")]
        if not chain:
            continue
        capsule = np.zeros(alpha.shape, np.uint8)
        for bone in chain:
            cv2.line(capsule, tuple(int(round(v)) for v in bone.head), tuple(int(round(v)) for v in bone.tail), 1, 2 * r)
            cv2.circle(capsule, tuple(int(round(v)) for v in bone.tail), r, 1, -1)
        out[side] = (capsule > 0) & (alpha > 0)
    return out


def texture_atlas(rgba: np.ndarray, rig: Rig) -> np.ndarray:
    """The texture a rig's ``uv`` indexes: the cut-out, and beside it the body alone, where the
    free arms lay painted over from the body around them (a raised arm shows the suit, not a
    second arm)."""
    if rig.under_arms is None:
        return rgba
    body = rgba.copy()
    body[..., :3] = cv2.inpaint(np.ascontiguousarray(rgba[..., :3]), rig.under_arms.astype(np.uint8),
                                3, cv2.INPAINT_TELEA)
    body[..., 3] = rig.body_alpha
    return np.hstack([rgba, body])


def build_rig(rgba: np.ndarray, meta: dict) -> Rig:
    """The rig of a cut-out (RGBA) from its metadata's landmarks (in the cut-out's coordinates)."""
    alpha = rgba[..., 3]
    if not (alpha > 0).any():
        raise ValueError("an empty cut-out has nothing to rig")
    h, w = alpha.shape
    lm = {}
    if list(meta.get("size", [])) == [w, h]:
        lm = {k: np.asarray(v, np.float64) for k, v in meta.get("landmarks", {}).items()}
    bones, scale_len, regions = _skeleton(lm, meta.get("visibility", {}), alpha)
    ys = np.nonzero(alpha > 0)[0]
    height = float(ys.max() - ys.min() + 1)
    spacing = max(4.0, height / 22.0)
    band = BLEND_BAND * (scale_len if len(bones) > 1 else height)
    names = [b.name for b in bones]
    arms = _arm_masks(alpha, bones, regions, scale_len) if "spine" in names else {}
    # An arm too small to mesh on its own (a few pixels inside the frame) stays painted on the body.
    arms = {side: m for side, m in arms.items() if m.sum() >= 6 * spacing * spacing}
    # The arms are layers of their own over the body, each turning about its shoulder like a
    # paper doll's (no skin blended with the torso to stretch and flip): an arm lying against the
    # body turns without dragging the body's skin with it (a sleeve raised over the head no
    # longer pulls the suit up like a wing). The body keeps its own outline where the torso, the head and
    # the shoulders are; what an arm covered there is painted over in its texture.
    body_alpha = alpha.copy()
    under = np.zeros(alpha.shape, bool)
    if arms:
        keep = np.zeros(alpha.shape, np.uint8)
        cv2.fillPoly(keep, [np.round(regions["torso"]).astype(np.int32)], 1)
        cv2.circle(keep, tuple(int(round(v)) for v in regions["head_centre"]), int(regions["head_radius"]), 1, -1)
        for b in bones:
            if b.name.endswith("_shoulder"):
                cv2.circle(keep, tuple(int(round(v)) for v in b.head), int(round(ARM_RADIUS * scale_len)), 1, -1)
        r = max(2, int(round(ARM_RADIUS * scale_len)))
        # An arm hanging against the side stays painted on the body too: the body keeps a band
        # an arm's width around the torso, whatever it encloses, and no slivers of arm.
        keep = cv2.dilate(keep, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        for mask in arms.values():
            under |= mask
        body = (alpha > 0) & ~(under & (keep == 0))
        body = cv2.morphologyEx(body.astype(np.uint8), cv2.MORPH_OPEN,
                                cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (r | 1, r | 1))).astype(bool)
        flood = np.pad(body.astype(np.uint8), 1)
        cv2.floodFill(flood, None, (0, 0), 1)
        body |= (flood[1:-1, 1:-1] == 0) & (alpha > 0)
        body_alpha[~body] = 0
        under &= body
    parts = [(body_alpha, [j for j, n in enumerate(names) if not n.endswith(("_shoulder", "_elbow"))], False)]
    parts += [(np.where(m, alpha, 0).astype(alpha.dtype),
               [j for j, n in enumerate(names) if n in (f"{side}_shoulder", f"{side}_elbow")], True)
              for side, m in arms.items()]
    all_v, all_t, all_w, all_uv, all_front = [], [], [], [], []
    count = 0
    for part_alpha, allowed, is_arm in parts:
        if not (part_alpha > 0).any():
            continue
        sub = [bones[j] for j in allowed]
        joints = np.array([p for b in sub for p in (b.head, b.tail)], np.float64)
        along = np.array([b.head + (b.tail - b.head) * t for b in sub for t in np.linspace(0, 1, 5)], np.float64)
        v, t = _mesh(part_alpha, np.vstack([joints, along]), spacing)
        w = _weights(v, bones, regions, band, allowed)
        all_v.append(v)
        all_t.append(t + count)
        all_w.append(w)
        all_uv.append(v if is_arm or not arms else v + [alpha.shape[1], 0])
        all_front.append(np.full(len(t), is_arm))
        count += len(v)
    vertices, triangles, weights = np.vstack(all_v), np.vstack(all_t), np.vstack(all_w)
    uv, front = np.vstack(all_uv), np.concatenate(all_front)
    vertices, triangles, weights, origin = _split_seams(vertices, triangles, weights, bones)
    uv = uv[origin]
    owner = weights[triangles].sum(axis=1).argmax(axis=1)
    layers = np.array([bones[j].layer for j in owner], np.int32)
    layers[front] = LAYER_FRONT
    layers[~front & (layers == LAYER_FRONT)] = LAYER_BODY
    ground = float(vertices[:, 1].max())
    soles = np.nonzero(vertices[:, 1] >= ground - max(2.0, 0.03 * height))[0]
    return Rig(vertices, triangles, bones, weights, layers, soles, ground, height,
               {b.name: i for i, b in enumerate(bones)}, uv, under if arms else None, body_alpha if arms else None)


# ---- posing -------------------------------------------------------------------------------------

def _rotation_about(angle_deg: float, pivot: np.ndarray) -> np.ndarray:
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    r = np.array([[c, -s], [s, c]])
    out = np.eye(3)
    out[:2, :2] = r
    out[:2, 2] = pivot - r @ pivot
    return out


def bone_transforms(rig: Rig, rotations: dict[str, float], root: np.ndarray) -> np.ndarray:
    """(B, 3, 3) world transforms: ``root`` (3x3) for the pelvis, then each bone turned about its
    joint by ``rotations[name]`` degrees (image coordinates: positive turns clockwise on screen)."""
    out = np.empty((len(rig.bones), 3, 3))
    for j, bone in enumerate(rig.bones):
        local = _rotation_about(rotations.get(bone.name, 0.0), bone.head)
        out[j] = (root if bone.parent is None else out[bone.parent]) @ local
    return out


def deform(rig: Rig, transforms: np.ndarray) -> np.ndarray:
    """Linear blend skinning: (V, 2) deformed vertices."""
    homo = np.hstack([rig.vertices, np.ones((len(rig.vertices), 1))])
    per_bone = np.einsum("bij,vj->vbi", transforms[:, :2, :], homo)  # (V, B, 2)
    return np.einsum("vb,vbi->vi", rig.weights, per_bone)


# ---- rendering ----------------------------------------------------------------------------------

def premultiplied(rgba: np.ndarray) -> np.ndarray:
    f = rgba.astype(np.float32)
    f[..., :3] *= f[..., 3:4] / 255.0
    return f


class Renderer:
    """Draws a rig's deformed mesh with its texture onto square RGBA frames.

    ``texture`` is the premultiplied float32 RGBA the rig's rest vertices index (after ``scale``:
    rest vertex v samples the texture at ``v * scale``).
    """

    def __init__(self, rig: Rig, texture: np.ndarray, scale: float, size: int):
        self.rig, self.size, self.scale = rig, size, scale
        self.texture = texture
        order = np.argsort(rig.layers, kind="stable")
        self.order = order
        uv = rig.vertices if rig.uv is None else rig.uv
        self.src = uv[rig.triangles] * scale  # (T, 3, 2) texture positions
        self.grid_y, self.grid_x = np.mgrid[0:size, 0:size].astype(np.float32)
        self.ids = np.empty((size, size), np.int32)

    def _inverse_affines(self, dest: np.ndarray) -> np.ndarray:
        """(T + 1, 6) affine per triangle, frame pixel -> texture position; the last row sends
        pixels no triangle covers far outside the texture (transparent)."""
        tri = dest[self.rig.triangles]  # (T, 3, 2)
        d = np.concatenate([tri, np.ones((len(tri), 3, 1))], axis=2)  # (T, 3, 3) rows [x, y, 1]
        # Solve d @ X = src for X (3x2): the affine taking destination points to source points.
        x = np.linalg.solve(d, self.src)  # (T, 3, 2)
        aff = np.concatenate([x[:, :, 0], x[:, :, 1]], axis=1)  # ax, bx, cx, ay, by, cy
        return np.ascontiguousarray(np.vstack([aff, [0, 0, -1e4, 0, 0, -1e4]]).astype(np.float32))

    def render(self, dest: np.ndarray, out: np.ndarray, texture: np.ndarray | None = None) -> None:
        """Draw the mesh with vertices at ``dest`` (frame pixels) into ``out`` (size, size, 4) uint8."""
        texture = self.texture if texture is None else texture
        lo = np.maximum(np.floor(dest.min(axis=0)).astype(int) - 1, 0)
        hi = np.minimum(np.ceil(dest.max(axis=0)).astype(int) + 2, self.size)
        if (hi <= lo).any():
            return
        x0, y0, x1, y1 = int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])
        ids = self.ids[y0:y1, x0:x1]
        none = len(self.rig.triangles)
        ids[...] = none
        fixed = np.round((dest - [x0, y0]) * 16).astype(np.int32)[self.rig.triangles]  # 4 fractional bits
        for t in self.order:
            cv2.fillConvexPoly(ids, fixed[t], int(t), cv2.LINE_8, 4)
        # Rasterising triangle by triangle can leave single-pixel cracks along shared edges: an
        # uncovered pixel takes a neighbour's triangle (its affine holds a pixel beyond the edge).
        # Ids are exact in float32 up to 2^24.
        found = np.where(ids == none, -1, ids).astype(np.float32)
        grown = cv2.dilate(found, np.ones((3, 3), np.uint8))
        ids[...] = np.where(found < 0, np.where(grown < 0, none, grown), found).astype(np.int32)
        xx, yy = self.grid_x[y0:y1, x0:x1], self.grid_y[y0:y1, x0:x1]
        # Six gathers of one coefficient each beat one gather of six-float rows (2x here).
        cx, bx, ax, cy, by, ay = (np.take(c, ids) for c in self._inverse_affines(dest).T[[2, 1, 0, 5, 4, 3]])
        mx, my = cx, cy
        ax *= xx
        bx *= yy
        mx += ax
        mx += bx
        ay *= xx
        by *= yy
        my += ay
        my += by
        warped = cv2.remap(texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        alpha = np.ascontiguousarray(warped[..., 3])
        gain = 255.0 / np.maximum(alpha, 1e-3)
        out[y0:y1, x0:x1] = cv2.convertScaleAbs(cv2.multiply(warped, cv2.merge([gain, gain, gain, np.ones_like(gain)])))
