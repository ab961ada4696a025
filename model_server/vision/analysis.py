"""The "analyze" stage: find the subject of a photo, put it upright, and judge whether it can
become a buddy (found, big enough) and whether it is cut off by the frame.

People are found with mediapipe pose (landmarks + person mask). Anything else (a pet, a toy, a
mug) goes through a salient-object fallback: colours that are rare along the image border are
the candidate foreground, GrabCut refines them, and the result must be one compact, well
separated blob of a sensible size. There is no offline animal classifier in our dependencies,
so non-person subjects are reported as "object" (skimage's chelsea, a cat's face filling the
frame, is an object here; coffee, a cup on a saucer, is an object too: a clear, compact
foreground that makes a perfectly good sticker character).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from model_server.vision._pose import detect_pose
from model_server.vision.errors import NO_USABLE_SUBJECT, SUBJECT_TOO_SMALL, VisionError
from model_server.vision.quality import MAX_BOX_FILL, MIN_EDGE_ALIGNMENT, box_fill, edge_alignment

# Detection runs on a downscaled copy: pose works at 256 px internally, GrabCut is O(pixels).
POSE_WORK_SIDE = 640
SALIENCY_WORK_SIDE = 200

MIN_SUBJECT_HEIGHT_SHARE = 0.18  # of the image height
MIN_SUBJECT_AREA_SHARE = 0.02  # of the image area
MIN_OBJECT_AREA_SHARE = 0.04
MAX_OBJECT_AREA_SHARE = 0.90
MIN_OBJECT_SOLIDITY = 0.55
MIN_OBJECT_CONTRAST = 14.0  # Lab units between subject and background (noise/flat images fall below)
MIN_OBJECT_SEPARATION = 0.3  # Bhattacharyya distance of inside/outside colour histograms
# One subject: no other salient region of the photo (colours rare on the border, not a box such as
# a door or a window) reaches this share of the subject's area. Scenes of many scattered shapes
# offered competitors of 0.49-1.0 of their largest blob; subjects on plain, indoor and outdoor
# backdrops, the cat, the coffee and a drawn figure on scattered shapes 0-0.24.
MAX_COMPETITOR_SHARE = 0.35
# Uprightness score = 2 * torso + head (-3..3): the torso is the body's axis, the head leans and nods.
# A turned orientation must show an upright person where the photo as given does not, and beat it by this.
UPRIGHT_CLEAR_WIN = 0.1

NO_SUBJECT_MESSAGE = (
    "We couldn't find a person or character in this photo. Please upload a photo with one person, "
    "pet or toy clearly in view, in front of a simple background."
)
TOO_SMALL_MESSAGE = (
    "The person or character in this photo is too small. Please upload a closer photo where they "
    "fill a good part of the frame."
)

_CORE_LANDMARKS = ("nose", "left_shoulder", "right_shoulder")


@dataclass
class Analysis:
    image: np.ndarray  # RGB, orientation fixed
    rotation: int  # clockwise degrees this stage applied to its input (content orientation)
    subject: str  # "person" | "animal" | "object"
    box: tuple[int, int, int, int]  # x, y, w, h of the subject in `image`
    cut_off: bool
    missing: list[str] = field(default_factory=list)
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)
    visibility: dict[str, float] = field(default_factory=dict)
    # The person's outline from the pose model's mask on the photo, a polygon in `image` pixels.
    # Later stages seed their cut-out with it: the detector that drew it often finds no one in a cartoon.
    outline: list[tuple[float, float]] = field(default_factory=list)

    def meta(self) -> dict:
        """JSON-able description of the analysis (everything but the pixels)."""
        h, w = self.image.shape[:2]
        return {
            "size": [int(w), int(h)],
            "rotation": int(self.rotation),
            "subject": self.subject,
            "box": [int(v) for v in self.box],
            "cut_off": bool(self.cut_off),
            "missing": list(self.missing),
            "landmarks": {k: [round(float(x), 2), round(float(y), 2)] for k, (x, y) in self.landmarks.items()},
            "visibility": {k: round(float(v), 3) for k, v in self.visibility.items()},
            "outline": [[round(float(x), 1), round(float(y), 1)] for x, y in self.outline],
        }


def _rotate_cw(img: np.ndarray, degrees: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(img, k=-(degrees // 90) % 4))


def _resize_long_side(img: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale == 1.0:
        return img, 1.0
    return cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA), scale


def _uprightness(landmarks: dict, visibility: dict) -> tuple[float, float] | None:
    """How upright a detected person stands in the image: (torso, head), each the cosine between
    the image's up direction and, for the torso, hips -> shoulders, for the head, shoulders -> eyes.

    1 is straight up, 0 sideways, -1 upside down. None if the face and shoulders are not clearly
    seen (then it is not a person we can judge). The hips may lie below the frame: mediapipe still
    places them along the body, which is all the direction needs.
    """
    if any(visibility.get(n, 0.0) < 0.5 for n in _CORE_LANDMARKS):
        return None

    def mid(a: str, b: str) -> np.ndarray:
        return (np.asarray(landmarks[a], np.float64) + np.asarray(landmarks[b], np.float64)) / 2

    def up(vec: np.ndarray) -> float:
        norm = float(np.hypot(*vec))
        return 0.0 if norm < 1e-6 else float(-vec[1] / norm)

    shoulders = mid("left_shoulder", "right_shoulder")
    eyes = mid("left_eye", "right_eye") if "left_eye" in landmarks and "right_eye" in landmarks else np.asarray(landmarks["nose"])
    torso = up(shoulders - mid("left_hip", "right_hip")) if "left_hip" in landmarks and "right_hip" in landmarks else 0.0
    return torso, up(eyes - shoulders)


def _is_upright(torso: float, head: float) -> bool:
    """Shoulders above the hips (torso within 60 degrees of vertical) and eyes above the shoulders.

    A person leaning into a camera (skimage's cameraman) has the head far forward of the
    shoulders, so the head alone would read as sideways; the torso says otherwise.
    """
    return torso >= 0.5 and head > 0.0


def _find_person(rgb: np.ndarray):
    """Pose on the upright orientation: returns (rotation, PoseResult on the rotated work image, scale).

    The photo as given wins whenever the person in it stands upright: an upright person is never
    turned. Otherwise all four orientations are compared and a turn is taken only when one of
    them shows an upright person and clearly beats the photo as given.
    """
    small, scale = _resize_long_side(rgb, POSE_WORK_SIDE)
    scored = {}
    for rotation in (0, 90, 180, 270):
        pose = detect_pose(_rotate_cw(small, rotation))
        judged = None if pose is None else _uprightness(pose.landmarks, pose.visibility)
        if judged is None:
            continue
        if rotation == 0 and _is_upright(*judged):
            return 0, pose, scale
        scored[rotation] = (2.0 * judged[0] + judged[1], judged, pose)
    upright = {r: v for r, v in scored.items() if _is_upright(*v[1])}
    if upright:
        best = max(upright, key=lambda r: upright[r][0])
        if 0 not in scored or upright[best][0] >= scored[0][0] + UPRIGHT_CLEAR_WIN:
            return best, upright[best][2], scale
    if 0 in scored and scored[0][1][1] > 0.0:
        return 0, scored[0][2], scale  # a person whose orientation is unclear: leave the photo as it is
    return None


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, bool)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best


def person_cut_off(landmarks: dict[str, tuple[float, float]], size: tuple[int, int], mask_box=None) -> list[str]:
    """Which body parts lie outside the frame, judged from the pose's (extrapolated) landmarks."""
    w, h = size
    bottom = h * 0.985  # a landmark on the last rows means the part is clipped too

    def out(*names: str) -> bool:
        return any(n in landmarks and landmarks[n][1] > bottom for n in names)

    missing = []
    if out("left_hip", "right_hip"):
        missing.append("hips")
    if out("left_knee", "right_knee"):
        missing.append("legs")
    if out("left_ankle", "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index"):
        missing.append("feet")
    elif mask_box is not None and missing == [] and mask_box[1] + mask_box[3] >= h - 1:
        # The body touches the bottom edge while the pose puts the feet just inside: toes are clipped.
        ankle_y = max(landmarks.get("left_ankle", (0, 0))[1], landmarks.get("right_ankle", (0, 0))[1])
        if ankle_y > h * 0.93:
            missing.append("feet")
    return missing


def _outline(mask: np.ndarray, scale: float) -> list[tuple[float, float]]:
    """The outer contour of a mask's largest region as a polygon in the image's pixels."""
    if not mask.any():
        return []
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygon = cv2.approxPolyDP(max(contours, key=cv2.contourArea), 1.0, True).reshape(-1, 2)
    return [(float(x) / scale, float(y) / scale) for x, y in polygon]


def _analyze_person(rgb: np.ndarray, found) -> Analysis:
    rotation, pose, scale = found
    image = _rotate_cw(rgb, rotation)
    h, w = image.shape[:2]
    landmarks = {k: (x / scale, y / scale) for k, (x, y) in pose.landmarks.items()}
    mask_small = _largest_component(pose.mask > 0.5)
    box_small = _mask_box(mask_small)
    if box_small is None:
        xs = [p[0] for n, p in pose.landmarks.items() if pose.visibility[n] > 0.5]
        ys = [p[1] for n, p in pose.landmarks.items() if pose.visibility[n] > 0.5]
        box_small = (int(min(xs)), int(min(ys)), int(max(xs) - min(xs) + 1), int(max(ys) - min(ys) + 1))
    x, y, bw, bh = (v / scale for v in box_small)
    box = (max(0, int(x)), max(0, int(y)), min(w, int(math.ceil(bw))), min(h, int(math.ceil(bh))))
    area_share = float(mask_small.mean()) if mask_small.any() else (bw * bh) / (w * h)
    if box[3] < MIN_SUBJECT_HEIGHT_SHARE * h or area_share < MIN_SUBJECT_AREA_SHARE:
        raise VisionError(SUBJECT_TOO_SMALL, TOO_SMALL_MESSAGE)
    missing = person_cut_off(landmarks, (w, h), box)
    outline = _outline(mask_small, scale)
    return Analysis(image, rotation, "person", box, bool(missing), missing, landmarks, dict(pose.visibility), outline)


def _compact_blob(fg: np.ndarray) -> np.ndarray | None:
    """The largest blob of a foreground mask if it is one compact subject of a sensible size."""
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    blob = _largest_component(fg)
    area = int(blob.sum())
    if area == 0 or not (MIN_OBJECT_AREA_SHARE <= area / blob.size <= MAX_OBJECT_AREA_SHARE):
        return None
    if area < 0.6 * fg.sum():
        return None  # several competing blobs: no single subject
    contours, _ = cv2.findContours(blob.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull_area = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
    if hull_area <= 0 or area / hull_area < MIN_OBJECT_SOLIDITY:
        return None
    return blob


def _colour_separation(small_rgb: np.ndarray, blob: np.ndarray) -> float:
    """Bhattacharyya distance between the colour histograms inside and outside the blob (0 same, 1 disjoint)."""
    lab = cv2.cvtColor(small_rgb, cv2.COLOR_RGB2LAB)
    inside = blob.astype(np.uint8)
    h_in = cv2.calcHist([lab], [0, 1, 2], inside, [8, 8, 8], [0, 256] * 3)
    h_out = cv2.calcHist([lab], [0, 1, 2], 1 - inside, [8, 8, 8], [0, 256] * 3)
    cv2.normalize(h_in, h_in)
    cv2.normalize(h_out, h_out)
    return float(cv2.compareHist(h_in, h_out, cv2.HISTCMP_BHATTACHARYYA))


def _competitor_share(dist: np.ndarray, blob: np.ndarray) -> float:
    """Area of the largest other candidate subject, as a share of the blob's: a region away from the
    blob whose colours are rare on the border (``dist`` over the contrast bar) and that is not a
    box (walls, doors and windows are rectangles, characters are not)."""
    near = cv2.dilate(blob.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    salient = ((dist > MIN_OBJECT_CONTRAST) & ~near).astype(np.uint8)
    salient = cv2.morphologyEx(salient, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(salient, connectivity=8)
    best = 0
    for i in range(1, count):
        area, bw, bh = stats[i, cv2.CC_STAT_AREA], stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT]
        if area / float(bw * bh) <= MAX_BOX_FILL:
            best = max(best, int(area))
    return best / max(float(blob.sum()), 1.0)


def _grabcut(small_rgb: np.ndarray, mask: np.ndarray | None, rect=None) -> np.ndarray | None:
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    gc = mask if mask is not None else np.zeros(small_rgb.shape[:2], np.uint8)
    mode = cv2.GC_INIT_WITH_MASK if rect is None else cv2.GC_INIT_WITH_RECT
    try:
        cv2.grabCut(cv2.cvtColor(small_rgb, cv2.COLOR_RGB2BGR), gc, rect, bgd, fgd, 3, mode)
    except cv2.error:
        return None  # GrabCut refuses degenerate input (e.g. no background sample)
    return (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)


def salient_object_mask(rgb: np.ndarray) -> np.ndarray | None:
    """One compact, well separated foreground blob (bool mask at rgb's size), or None.

    First evidence: colour rarity with respect to the image border (a photo's border is mostly
    background), snapped to edges by GrabCut. Subjects that fill the frame (a cat's face) put
    their own colours on the border, so the second try is GrabCut from a central rectangle. Either
    result must be compact and its colours must differ from the rest of the picture, which is
    what a flat colour, a wall or noise can never offer, and no other region of the photo may be
    an equally good candidate (``_competitor_share``): a scene of many things has no one subject.
    """
    small, _ = _resize_long_side(rgb, SALIENCY_WORK_SIDE)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0  # L to 0..100 so that Lab distances are roughly perceptual
    lab[..., 1:] -= 128.0
    h, w = lab.shape[:2]
    if float(lab.reshape(-1, 3).std(axis=0).max()) < 3.0:
        return None  # a flat colour
    band = max(2, round(0.06 * min(h, w)))
    border = np.concatenate([
        lab[:band].reshape(-1, 3), lab[-band:].reshape(-1, 3), lab[:, :band].reshape(-1, 3), lab[:, -band:].reshape(-1, 3)
    ])
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(7)  # deterministic analysis for the same photo
    _, _, centres = cv2.kmeans(border, 6, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    dist = np.min(np.linalg.norm(lab[:, :, None, :] - centres[None, None], axis=3), axis=2)
    dist = cv2.GaussianBlur(dist, (0, 0), 1.5)  # judge regions, not single noisy pixels

    blob = None
    if float(np.percentile(dist, 99)) >= MIN_OBJECT_CONTRAST:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        centre_prior = np.exp(-(((xx - w / 2) / (0.5 * w)) ** 2 + ((yy - h / 2) / (0.5 * h)) ** 2))
        saliency = dist * (0.5 + 0.5 * centre_prior)
        thresh = max(MIN_OBJECT_CONTRAST * 0.6, float(np.percentile(saliency, 50)))
        gc = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
        gc[saliency > thresh] = cv2.GC_PR_FGD
        gc[saliency > 2.2 * thresh] = cv2.GC_FGD
        gc[:2, :] = gc[-2:, :] = cv2.GC_BGD
        gc[:, :2] = gc[:, -2:] = cv2.GC_BGD
        fg = _grabcut(small, gc)
        blob = None if fg is None else _compact_blob(fg)
        if blob is not None:
            ring = cv2.dilate(blob.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~blob
            if not ring.any() or float(np.median(dist[blob]) - np.median(dist[ring])) < MIN_OBJECT_CONTRAST * 0.5:
                blob = None
    if blob is None:
        fg = _grabcut(small, None, rect=(int(w * 0.1), int(h * 0.06), int(w * 0.8), int(h * 0.9)))
        blob = None if fg is None else _compact_blob(fg)
    if blob is None or _colour_separation(small, blob) < MIN_OBJECT_SEPARATION:
        return None
    if _competitor_share(dist, blob) >= MAX_COMPETITOR_SHARE:
        return None  # several candidates of a size (scattered shapes, a crowd of things): no single subject
    full = cv2.resize(blob.astype(np.uint8), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    return full.astype(bool)


def _work_size_edge_alignment(rgb: np.ndarray, mask: np.ndarray) -> float:
    """``edge_alignment`` of a salient mask at the size it was found (its outline is only that exact)."""
    small, _ = _resize_long_side(rgb, SALIENCY_WORK_SIDE)
    sh, sw = small.shape[:2]
    return edge_alignment(small, cv2.resize(mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0)


def analyze(rgb: np.ndarray) -> Analysis:
    """Find, straighten and validate the subject of an RGB photo."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    found = _find_person(rgb)
    if found is not None:
        return _analyze_person(rgb, found)
    mask = salient_object_mask(rgb)
    # A subject's outline follows the photo's contours and is not a box: a chunk of sky cut
    # along nothing (a rocket's launch pad) is no character.
    if mask is None or _work_size_edge_alignment(rgb, mask) < MIN_EDGE_ALIGNMENT or box_fill(mask) > MAX_BOX_FILL:
        raise VisionError(NO_USABLE_SUBJECT, NO_SUBJECT_MESSAGE)
    box = _mask_box(mask)
    h, w = rgb.shape[:2]
    if box[3] < MIN_SUBJECT_HEIGHT_SHARE * h:
        raise VisionError(SUBJECT_TOO_SMALL, TOO_SMALL_MESSAGE)
    return Analysis(rgb.copy(), 0, "object", box, False, [], {}, {})
