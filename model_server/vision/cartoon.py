"""The "cartoonize" stage: a photo of the subject becomes a flat-coloured, ink-outlined cartoon,
and a cut-off person gets simple drawn legs and feet ("full-body expansion").

The look: crop around the subject, a gentle big-head warp for people (cute proportions),
edge-preserving smoothing, k-means colour quantisation (cel shading), clean ink outlines from
the smoothed image's strong edges. Styles change the palette and the ink. All landmark and box
coordinates in the metadata follow every geometric change so later stages can use them.
"""

from __future__ import annotations

import copy
import math

import cv2
import numpy as np

WORK_SIDE = 768  # long side of the cartoon; enough for a 512 px animation, fast on 2 cores
INK = np.array([34, 28, 40], np.float32)  # a warm near-black reads friendlier than pure black

# style -> (colour clusters, saturation gain, lightness lift toward white, ink thickness px, halftone)
_STYLES = {
    "classic": (10, 1.18, 0.0, 2, False),
    "pastel": (9, 0.75, 0.30, 2, False),
    "bold": (7, 1.45, 0.0, 3, False),
    "comic": (8, 1.25, 0.0, 3, True),
}


# ---- geometry helpers -------------------------------------------------------------------------

def _map_points(meta: dict, fn) -> dict:
    """Apply fn((x, y)) -> (x, y) to every landmark and outline point and return a new meta."""
    out = copy.deepcopy(meta)
    out["landmarks"] = {k: list(map(float, fn(tuple(v)))) for k, v in meta.get("landmarks", {}).items()}
    if meta.get("outline"):
        out["outline"] = [[round(float(c), 1) for c in fn(tuple(p))] for p in meta["outline"]]
    return out


def _crop_box(meta: dict, h: int, w: int) -> tuple[int, int, int, int]:
    x, y, bw, bh = meta["box"]
    margin_x = 0.14 * bw
    top = 0.10 * bh  # hair and a little headroom
    bottom = 0.06 * bh
    x0 = max(0, int(x - margin_x))
    y0 = max(0, int(y - top))
    x1 = min(w, int(math.ceil(x + bw + margin_x)))
    y1 = min(h, int(math.ceil(y + bh + bottom)))
    return x0, y0, x1, y1


def _head_geometry(landmarks: dict) -> tuple[float, float, float] | None:
    """Centre and radius of the head from the face landmarks."""
    need = ("nose", "left_eye", "right_eye")
    if not all(n in landmarks for n in need):
        return None
    ex = (landmarks["left_eye"][0] + landmarks["right_eye"][0]) / 2
    ey = (landmarks["left_eye"][1] + landmarks["right_eye"][1]) / 2
    eye_gap = math.dist(landmarks["left_eye"], landmarks["right_eye"])
    ear_gap = math.dist(landmarks["left_ear"], landmarks["right_ear"]) if "left_ear" in landmarks and "right_ear" in landmarks else 0
    head_w = max(eye_gap * 2.6, ear_gap * 1.15)
    if head_w < 8:
        return None
    # The head's centre sits a bit above the eyes (the skull is above, the chin below).
    return ex, ey - 0.05 * head_w, 0.5 * head_w * 1.6


def _bulge_scale(r: np.ndarray, radius: float, gain: float) -> np.ndarray:
    t = np.clip(r / radius, 0.0, 1.0)
    return 1.0 + (gain - 1.0) * (1.0 - t * t) ** 2


def _big_head(img: np.ndarray, meta: dict, gain: float = 1.16) -> tuple[np.ndarray, dict]:
    """Magnify the head smoothly (cute proportions); landmarks follow the forward map."""
    head = _head_geometry(meta.get("landmarks", {}))
    if head is None:
        return img, meta
    cx, cy, radius = head
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    s = _bulge_scale(np.sqrt(dx * dx + dy * dy), radius, gain).astype(np.float32)
    warped = cv2.remap(img, cx + dx / s, cy + dy / s, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def forward(p):
        qx, qy = p[0] - cx, p[1] - cy
        px, py = qx, qy
        for _ in range(12):  # fixed point of p = q * s(|p|)
            k = float(_bulge_scale(np.array(math.hypot(px, py)), radius, gain))
            px, py = qx * k, qy * k
        return cx + px, cy + py

    return warped, _map_points(meta, forward)


# ---- the look ----------------------------------------------------------------------------------

def _quantise(smooth: np.ndarray, k: int) -> np.ndarray:
    """Cel shading: k-means colour clusters in Lab, fitted on a sample, applied to every pixel."""
    lab = cv2.cvtColor(smooth, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    rng = np.random.default_rng(11)  # same photo, same cartoon
    sample = lab[rng.choice(len(lab), size=min(len(lab), 12000), replace=False)]
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 25, 0.5)
    cv2.setRNGSeed(11)
    _, _, centres = cv2.kmeans(sample, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    # Nearest centre via |x|^2 - 2 x.c + |c|^2, one matrix product instead of an (N, k, 3) tensor.
    d = (centres * centres).sum(1)[None, :] - 2.0 * lab @ centres.T
    labels = np.argmin(d, axis=1)
    quant = centres[labels].reshape(smooth.shape).astype(np.uint8)
    quant = cv2.medianBlur(quant, 5)  # drop single-pixel islands between cells
    return cv2.cvtColor(quant, cv2.COLOR_LAB2RGB)


def _recolour(rgb: np.ndarray, saturation: float, lift: float) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if lift:
        out = out + (255.0 - out) * lift
    return out


def _ink_lines(smooth: np.ndarray, quant: np.ndarray, thickness: int) -> np.ndarray:
    """Soft ink coverage in [0, 1]: strong edges of the smoothed photo plus colour-cell borders."""
    gray = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(gray, 60, 150)
    # Borders between colour cells get ink only where the colours really differ (a shadow on a
    # cheek must not become a line across the face).
    lab = cv2.cvtColor(quant, cv2.COLOR_RGB2LAB).astype(np.float32)
    gx = np.abs(np.diff(lab, axis=1, append=lab[:, -1:])).sum(axis=2)
    gy = np.abs(np.diff(lab, axis=0, append=lab[-1:])).sum(axis=2)
    cells = ((gx + gy) > 70).astype(np.uint8) * 255
    lines = cv2.bitwise_or(edges, cells)
    # Texture (hair strands, fabric) makes tiny scribbles; keep only lines that run for a while.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= max(12, smooth.shape[0] // 40)
    lines = keep[labels].astype(np.uint8) * 255
    if thickness > 1:
        lines = cv2.dilate(lines, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (thickness, thickness)))
    return cv2.GaussianBlur(lines.astype(np.float32) / 255.0, (3, 3), 0.8)


def _halftone(rgb: np.ndarray) -> np.ndarray:
    """Comic-book dots in the darker tones."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    period = 6
    dots = (((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2) < (period * 0.28) ** 2
    lum = rgb.mean(axis=2)
    shade = (lum < 110) & dots
    out = rgb.copy()
    out[shade] *= 0.72
    return out


def cartoonize(rgb: np.ndarray, analysis_meta: dict, style: str) -> tuple[np.ndarray, dict]:
    """Crop around the subject and render it as a cartoon; returns RGB and meta in its coordinates."""
    k, saturation, lift, thickness, halftone = _STYLES.get(style, _STYLES["classic"])
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = _crop_box(analysis_meta, h, w)
    crop = rgb[y0:y1, x0:x1]
    scale = WORK_SIDE / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    meta = _map_points(analysis_meta, lambda p: ((p[0] - x0) * scale, (p[1] - y0) * scale))
    bx, by, bw, bh = analysis_meta["box"]
    meta["box"] = [round((bx - x0) * scale), round((by - y0) * scale), round(bw * scale), round(bh * scale)]
    meta["size"] = [crop.shape[1], crop.shape[0]]
    if meta.get("subject") == "person":
        crop, meta = _big_head(crop, meta)

    # Smoothing at half resolution is 4x cheaper and looks the same once quantised.
    half = cv2.resize(crop, (crop.shape[1] // 2, crop.shape[0] // 2), interpolation=cv2.INTER_AREA)
    # Mean shift flattens skin and cloth into even patches (no blotchy cells); bilateral rounds them.
    half = cv2.pyrMeanShiftFiltering(half, 8, 22)
    for _ in range(2):
        half = cv2.bilateralFilter(half, 7, 40, 5)
    smooth = cv2.resize(half, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    quant = _quantise(smooth, k)
    colour = _recolour(quant, saturation, lift)
    if halftone:
        colour = _halftone(colour)
    ink = _ink_lines(smooth, quant, thickness)[..., None]
    ink_colour = INK if style != "pastel" else np.array([92, 70, 84], np.float32)
    out = colour * (1.0 - ink) + ink_colour * ink
    meta["style"] = style if style in _STYLES else "classic"
    meta["cartoon"] = True
    return np.clip(out, 0, 255).astype(np.uint8), meta


# ---- full-body expansion -------------------------------------------------------------------------

def _pair(landmarks: dict, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    left, right = landmarks.get(f"left_{name}"), landmarks.get(f"right_{name}")
    if left is None or right is None:
        return None
    return np.array(left, np.float64), np.array(right, np.float64)


def _main_colour(pixels: np.ndarray) -> np.ndarray:
    """The most common colour of some cartoon pixels (cel-shaded, so one cell wins), as float RGB."""
    pixels = pixels.reshape(-1, 3)
    bins = (pixels // 24).astype(np.int32)
    keys = bins[:, 0] * 4096 + bins[:, 1] * 64 + bins[:, 2]
    values, counts = np.unique(keys, return_counts=True)
    return pixels[keys == values[np.argmax(counts)]].astype(np.float32).mean(axis=0)


def _paint(canvas: np.ndarray, cover: np.ndarray, mask: np.ndarray, colour, outward: float = 0.0,
           shade_width: int = 0) -> None:
    """Fill a drawn shape: an ink rim around it, its colour, and one darker cel on its outer side
    (``outward`` -1 or 1 in x, like the cartoon's own cel shading); marked in the coverage mask."""
    ink = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))).astype(bool)
    canvas[ink] = INK.astype(np.uint8)
    canvas[mask] = np.asarray(colour, np.float32).astype(np.uint8)
    if outward and shade_width > 0:
        # Pixels of the shape whose neighbour ``shade_width`` further out is outside it: its outer rim.
        beyond = np.roll(mask, -int(outward) * shade_width, axis=1)
        canvas[mask & ~beyond] = (np.asarray(colour, np.float32) * 0.72).astype(np.uint8)
    cover[ink] = 255


def _tapered(shape: tuple[int, int], points: list, widths: list[float]) -> np.ndarray:
    """Bool mask of a limb through ``points`` whose width changes linearly between them, with
    round joints."""
    mask = np.zeros(shape, np.uint8)
    for (a, wa), (b, wb) in zip(zip(points, widths), zip(points[1:], widths[1:])):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        d = b - a
        n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6)
        quad = np.array([a + n * wa / 2, b + n * wb / 2, b - n * wb / 2, a - n * wa / 2])
        cv2.fillConvexPoly(mask, np.round(quad * 4).astype(np.int32), 1, cv2.LINE_AA, 2)
        cv2.circle(mask, (int(round(b[0] * 4)), int(round(b[1] * 4))), int(round(wb / 2 * 4)), 1, -1, cv2.LINE_AA, 2)
    return mask.astype(bool)


def _body_span_at_cut(meta: dict, h: int, fallback: tuple[float, float]) -> tuple[float, float]:
    """Left and right x of the body where the photo cuts it, from the person's outline."""
    pts = np.asarray(meta.get("outline") or [], np.float64).reshape(-1, 2)
    low = pts[pts[:, 1] > 0.93 * h] if len(pts) else pts
    if len(low) < 2:
        return fallback
    return float(low[:, 0].min()), float(low[:, 0].max())


def expand_full_body(cartoon_rgb: np.ndarray, meta: dict) -> tuple[np.ndarray, dict]:
    """Give a cut-off person a drawn lower body: the torso narrowing to the waist, a belt, hips,
    and legs with thighs, knees, shins and shoes below the frame.

    Classical inpainting smears; drawn shapes placed from the pose's out-of-frame hips, knees and
    ankles look like part of the cartoon. The proportions follow the body: hips a little
    narrower than the shoulders, thighs tapering to the knee and shins to the ankle, legs about
    as long as the torso (a cartoon's short legs: a real leg is half again as long), so the
    buddy stays cute and the canvas does not double in height. The drawn regions are listed in
    ``meta["drawn"]`` (polygons) so segmentation keeps them; the new hips, knees and ankles
    become landmarks, so the rig gives the legs thighs and shins that walk.
    """
    if not meta.get("cut_off") or meta.get("subject") != "person":
        return cartoon_rgb, meta
    lm = {k: np.array(v, np.float64) for k, v in meta.get("landmarks", {}).items()}
    shoulders = _pair(lm, "shoulder")
    hips = _pair(lm, "hip")
    if shoulders is None or hips is None:
        return cartoon_rgb, meta
    h, w = cartoon_rgb.shape[:2]
    shoulder_w = float(np.linalg.norm(shoulders[0] - shoulders[1]))
    hip_mid = (hips[0] + hips[1]) / 2
    torso_len = max(float(hip_mid[1] - (shoulders[0][1] + shoulders[1][1]) / 2), shoulder_w)
    leg_len = float(np.clip(0.8 * torso_len, 0.6 * shoulder_w, 1.1 * shoulder_w))
    foot_h = 0.22 * shoulder_w
    # The missing part of the torso, compressed (a chest-high photo gets a belly, not a whole torso).
    torso_ext = max(0.0, float(hip_mid[1]) - (h - 1)) * 0.45
    waist_y = h + torso_ext
    pelvis_h = 0.3 * shoulder_w
    new_h = int(math.ceil(waist_y + 0.1 * shoulder_w + leg_len + foot_h + 0.06 * shoulder_w))
    ext = new_h - h

    # Background of the new strip: the photo's bottom-corner colours (segmentation removes it anyway).
    corners = np.concatenate([cartoon_rgb[-4:, :8].reshape(-1, 3), cartoon_rgb[-4:, -8:].reshape(-1, 3)])
    canvas = np.empty((new_h, w, 3), np.uint8)
    canvas[:h] = cartoon_rgb
    canvas[h:] = np.median(corners, axis=0).astype(np.uint8)
    cover = np.zeros((new_h, w), np.uint8)
    shape = (new_h, w)

    cx = float(hip_mid[0])
    cut_l, cut_r = _body_span_at_cut(meta, h, (cx - 0.6 * shoulder_w, cx + 0.6 * shoulder_w))
    cut_l, cut_r = max(0.0, max(cut_l, cx - 0.8 * shoulder_w)), min(w - 1.0, min(cut_r, cx + 0.8 * shoulder_w))
    hip_half = float(np.clip(0.45 * (cut_r - cut_l), 0.36 * shoulder_w, 0.46 * shoulder_w))
    # The outfit's colour: the commonest colour of the body at the cut, ink and near-black
    # (a collar, a neck ring, outlines) aside; the median would mix in hands, props and background.
    span = cartoon_rgb[h - max(6, h // 12):, int(cut_l + 0.15 * (cut_r - cut_l)):int(cut_r - 0.15 * (cut_r - cut_l)) + 1]
    span = span.reshape(-1, 3)
    bright = span[span.astype(np.int32).sum(axis=1) > 150]
    cloth = _main_colour(bright if len(bright) >= 0.1 * len(span) else span)
    trouser = cloth * 0.86  # a jumpsuit stays one suit, the trousers a shade darker
    shoe = np.array([58, 48, 64], np.float32)

    # Legs first (behind), then the hips over their tops, then the torso down to the waist.
    leg_top = waist_y + 0.1 * shoulder_w
    new_landmarks = dict(meta.get("landmarks", {}))
    thigh_w = hip_half * 0.8  # the legs apart below the seat: a gap the mesh keeps open
    for side, sign in (("left", 1.0), ("right", -1.0)):
        hip = np.array([cx + sign * 0.5 * hip_half, leg_top])
        knee = np.array([hip[0] + sign * 0.03 * shoulder_w, leg_top + 0.5 * leg_len])
        ankle = np.array([hip[0] + sign * 0.06 * shoulder_w, leg_top + leg_len])
        leg = _tapered(shape, [hip, knee, ankle], [thigh_w, 0.25 * shoulder_w, 0.2 * shoulder_w])
        _paint(canvas, cover, leg, trouser, sign, max(2, int(0.07 * shoulder_w)))
        toe = ankle + [sign * 0.32 * shoulder_w, foot_h * 0.35]
        foot = np.zeros(shape, np.uint8)
        centre = (int((ankle[0] + toe[0]) / 2), int(ankle[1] + foot_h * 0.25))
        axes = (int(0.3 * shoulder_w), int(foot_h * 0.55))
        cv2.ellipse(foot, centre, axes, 0, 0, 360, 1, -1, cv2.LINE_AA)
        _paint(canvas, cover, foot.astype(bool), shoe)
        # Highlight on the toe cap, sole line along the bottom: they read as shoes, not holes.
        glint = (int(centre[0] + sign * 0.35 * axes[0]), int(centre[1] - 0.35 * axes[1]))
        cv2.ellipse(canvas, glint, (max(1, int(0.28 * axes[0])), max(1, int(0.22 * axes[1]))), 0, 0, 360,
                    (120, 110, 130), -1, cv2.LINE_AA)
        cv2.ellipse(canvas, centre, (max(1, axes[0] - 2), max(1, axes[1] - 2)), 0, 20, 160, (30, 24, 34),
                    max(1, int(0.18 * axes[1])), cv2.LINE_AA)
        new_landmarks[f"{side}_hip"] = [float(hip[0]), float(hip[1])]
        new_landmarks[f"{side}_knee"] = [float(knee[0]), float(knee[1])]
        new_landmarks[f"{side}_ankle"] = [float(ankle[0]), float(ankle[1])]
        new_landmarks[f"{side}_heel"] = [float(ankle[0] - sign * 0.05 * shoulder_w), float(ankle[1] + foot_h * 0.3)]
        new_landmarks[f"{side}_foot_index"] = [float(toe[0]), float(toe[1])]
    # Hips: the seat of the trousers, rounded below, the crotch between the thighs.
    pelvis = np.zeros(shape, np.uint8)
    seat = np.array([[cx - hip_half, waist_y], [cx + hip_half, waist_y], [cx + hip_half, leg_top + 0.05 * shoulder_w],
                     [cx, leg_top + pelvis_h * 0.5], [cx - hip_half, leg_top + 0.05 * shoulder_w]])
    cv2.fillPoly(pelvis, [np.round(seat * 4).astype(np.int32)], 1, cv2.LINE_AA, 2)
    _paint(canvas, cover, pelvis.astype(bool), trouser)
    # The torso narrows from the body at the cut to the waist, and a belt closes it.
    torso = np.zeros(shape, np.uint8)
    # Its sides keep the body's width at first and curve in to the hips near the waist.
    depth = waist_y - (h - 1.0)
    body = np.array([[cut_l, h - 1.0], [cut_r, h - 1.0], [0.6 * cut_r + 0.4 * (cx + hip_half), h - 1.0 + 0.6 * depth],
                     [cx + hip_half, waist_y], [cx - hip_half, waist_y], [0.6 * cut_l + 0.4 * (cx - hip_half), h - 1.0 + 0.6 * depth]])
    cv2.fillPoly(torso, [np.round(body * 4).astype(np.int32)], 1, cv2.LINE_AA, 2)
    torso = torso.astype(bool)
    _paint(canvas, cover, torso, cloth)
    belt = np.zeros(shape, np.uint8)
    cv2.rectangle(belt, (int(cx - hip_half), int(waist_y - 0.07 * shoulder_w)), (int(cx + hip_half), int(waist_y + 0.02 * shoulder_w)), 1, -1)
    _paint(canvas, cover, belt.astype(bool), trouser * 0.75)
    # The photo's own rows stay as they are: the body continues across the cut without an ink line.
    canvas[:h] = cartoon_rgb
    contours, _ = cv2.findContours(cover, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    drawn = [c.reshape(-1, 2).tolist() for c in contours if len(c) >= 3]

    out = copy.deepcopy(meta)
    out["landmarks"] = {k: [float(v[0]), float(v[1])] for k, v in new_landmarks.items()}
    out["size"] = [w, new_h]
    bx, by, bw, bh = meta["box"]
    out["box"] = [bx, by, bw, new_h - by]
    out["cut_off"] = False
    out["missing"] = []
    out["expanded"] = {"added_rows": ext, "from_missing": list(meta.get("missing", []))}
    out["drawn"] = meta.get("drawn", []) + drawn
    return canvas, out
