"""The "segment image" stage: a soft alpha mask of the subject, and the cut-out RGBA.

People: the person's outline, found by the pose model on the photo at analysis time and carried
through the cartoon's geometry in the metadata, seeds GrabCut (sure/probable bands around it),
which snaps the outline to real edges; the pose detector run on the cartoon itself is only the
fallback, as it often finds no one in flat colours with drawn legs. The landmarks are a second,
always available seed: face, neck, torso and arms are sure subject (no hole in
a face whose skin matches the wall), their surroundings probably subject. Other subjects:
GrabCut from the analysed box (the box probably subject, only what lies outside it background).
Regions drawn by the cartoon stage (``meta["drawn"]``, e.g. the expanded legs) are always
foreground. Then: the largest component, holes filled, the outline band re-decided at full size
by GrabCut's colour models (``_refine_edge``), and a 1-2 px anti-aliased edge.
"""

from __future__ import annotations

import copy

import cv2
import numpy as np

from model_server.vision._pose import detect_pose

WORK_SIDE = 400  # GrabCut cost grows with pixels; the edge is refined at full size afterwards


def _largest_component(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask.astype(bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background is what the image border reaches; everything enclosed by the subject is subject."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = padded.copy()
    ff_mask = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return mask.astype(bool) | holes


def _drawn_mask(meta: dict, shape: tuple[int, int], scale: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for polygon in meta.get("drawn", []):
        pts = np.round(np.asarray(polygon, np.float64) * scale).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def _seed_from_pose(small: np.ndarray) -> np.ndarray | None:
    pose = detect_pose(small)
    if pose is None or pose.mask.max() < 0.5:
        return None
    prob = pose.mask
    gc = np.full(prob.shape, cv2.GC_BGD, np.uint8)
    near = cv2.dilate((prob > 0.3).astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    gc[near] = cv2.GC_PR_BGD
    gc[prob > 0.5] = cv2.GC_PR_FGD
    core = cv2.erode((prob > 0.8).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    gc[core] = cv2.GC_FGD
    return gc


def _landmark_seed(meta: dict, shape: tuple[int, int], scale: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(sure, probable) subject masks drawn from a person's landmarks, or None without a face and shoulders.

    Sure: the inner face, the neck, the torso shrunk toward its middle and thin arm bones (only
    confidently seen arm joints). Probable: the head with its hair, the full torso and thick arms.
    """
    lm = {k: np.asarray(v, np.float64) * scale for k, v in meta.get("landmarks", {}).items()}
    vis = meta.get("visibility", {})
    if not all(k in lm for k in ("nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder")):
        return None
    sure, probable = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    shoulder_w = max(float(np.linalg.norm(lm["left_shoulder"] - lm["right_shoulder"])), 4.0)
    eye_gap = max(float(np.linalg.norm(lm["left_eye"] - lm["right_eye"])), 2.0)
    eyes = (lm["left_eye"] + lm["right_eye"]) / 2
    face_r = max(1.6 * eye_gap, 0.16 * shoulder_w)

    def pt(p):
        return tuple(int(round(v)) for v in p)

    cv2.circle(sure, pt((eyes + lm["nose"]) / 2), int(face_r), 1, -1)
    cv2.circle(probable, pt(eyes - [0, 0.6 * face_r]), int(2.0 * face_r), 1, -1)
    neck = (lm["left_shoulder"] + lm["right_shoulder"]) / 2
    cv2.line(sure, pt(lm["nose"]), pt(neck), 1, max(2, int(0.9 * face_r)))
    if "left_hip" in lm and "right_hip" in lm:
        torso = np.array([lm["left_shoulder"], lm["right_shoulder"], lm["right_hip"], lm["left_hip"]])
    else:  # no hips known: a torso as deep as the shoulders are wide
        torso = np.array([lm["left_shoulder"], lm["right_shoulder"], lm["right_shoulder"] + [0, shoulder_w],
                          lm["left_shoulder"] + [0, shoulder_w]])
    middle = torso.mean(axis=0)
    cv2.fillPoly(sure, [np.round(middle + 0.7 * (torso - middle)).astype(np.int32)], 1)
    cv2.fillPoly(probable, [np.round(middle + 1.15 * (torso - middle)).astype(np.int32)], 1)
    for side in ("left", "right"):
        chain = [f"{side}_shoulder"] + [f"{side}_{j}" for j in ("elbow", "wrist") if j in lm and vis.get(f"{side}_{j}", 0) >= 0.7]
        for a, b in zip(chain, chain[1:]):
            cv2.line(sure, pt(lm[a]), pt(lm[b]), 1, max(2, int(0.08 * shoulder_w)))
            cv2.line(probable, pt(lm[a]), pt(lm[b]), 1, max(3, int(0.3 * shoulder_w)))
    return sure.astype(bool), (probable.astype(bool) | sure.astype(bool))


def _seed_from_landmarks(meta: dict, shape: tuple[int, int], scale: float, seed: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """GrabCut labels for a person the pose detector did not find again: the landmark seed,
    probable background around it and sure background farther away."""
    sure, probable = seed
    gc = np.full(shape, cv2.GC_BGD, np.uint8)
    # Loose clothes and hair reach past the bones: about a third of the shoulder width.
    lm = meta["landmarks"]
    reach = 0.35 * scale * float(np.linalg.norm(np.subtract(lm["left_shoulder"], lm["right_shoulder"])))
    k = 2 * max(3, int(reach)) + 1
    near = cv2.dilate(probable.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
    gc[near] = cv2.GC_PR_BGD
    gc[probable] = cv2.GC_PR_FGD
    gc[sure] = cv2.GC_FGD
    return gc


def _seed_from_outline(meta: dict, shape: tuple[int, int], scale: float) -> np.ndarray | None:
    """GrabCut labels from the person's outline found on the photo (``meta["outline"]``): the
    same confidence bands as the pose mask gives, the outline standing for its 0.5 level."""
    polygon = meta.get("outline") or []
    if len(polygon) < 3:
        return None
    inside = np.zeros(shape, np.uint8)
    cv2.fillPoly(inside, [np.round(np.asarray(polygon, np.float64) * scale).astype(np.int32)], 1)
    if not inside.any():
        return None
    band = max(3, round(0.02 * max(shape)))  # the mask comes from a 256 px model: a few pixels off
    gc = np.full(shape, cv2.GC_BGD, np.uint8)
    gc[cv2.dilate(inside, np.ones((2 * band + 1, 2 * band + 1), np.uint8)).astype(bool)] = cv2.GC_PR_BGD
    gc[inside.astype(bool)] = cv2.GC_PR_FGD
    gc[cv2.erode(inside, np.ones((2 * band + 1, 2 * band + 1), np.uint8)).astype(bool)] = cv2.GC_FGD
    return gc


def _seed_from_box(meta: dict, shape: tuple[int, int], scale: float) -> np.ndarray:
    h, w = shape
    x, y, bw, bh = (v * scale for v in meta.get("box", (0, 0, w / scale, h / scale)))
    gc = np.full(shape, cv2.GC_BGD, np.uint8)
    pad_x, pad_y = 0.04 * bw + 2, 0.04 * bh + 2
    x0, y0 = int(max(0, x - pad_x)), int(max(0, y - pad_y))
    x1, y1 = int(min(w, x + bw + pad_x)), int(min(h, y + bh + pad_y))
    # The whole box is probably subject and only what lies outside it teaches GrabCut the
    # background (its rectangle mode): labelling the box's margins background would teach it the
    # subject's own hair, ink and shoes as background, and the edge refinement would then peel them off.
    gc[y0:y1, x0:x1] = cv2.GC_PR_FGD
    if x0 == 0 and y0 == 0 and x1 == w and y1 == h:
        gc[:2, :] = gc[:, :2] = gc[:, -2:] = cv2.GC_BGD  # GrabCut needs some background sample
    return gc


def segment_subject(rgb: np.ndarray, meta: dict) -> np.ndarray:
    """Float32 alpha in [0, 1] of the subject, same height and width as ``rgb``."""
    h, w = rgb.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    sh, sw = small.shape[:2]
    person = meta.get("subject") == "person"
    gc = _seed_from_outline(meta, (sh, sw), scale) if person else None
    if gc is None and person:
        gc = _seed_from_pose(small)
    landmarks = _landmark_seed(meta, (sh, sw), scale) if person else None
    if gc is None and landmarks is not None:
        gc = _seed_from_landmarks(meta, (sh, sw), scale, landmarks)
    elif gc is None:
        gc = _seed_from_box(meta, (sh, sw), scale)
    elif landmarks is not None:
        gc[landmarks[0]] = cv2.GC_FGD  # a mask may miss a face; the landmarks do not
    drawn = _drawn_mask(meta, (sh, sw), scale)
    gc[drawn] = cv2.GC_FGD
    models = None
    if (gc == cv2.GC_FGD).any() or (gc == cv2.GC_PR_FGD).any():
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), gc, None, bgd, fgd, 4, cv2.GC_INIT_WITH_MASK)
            models = (fgd, bgd)
        except cv2.error:
            pass  # degenerate seeds (no background at all): keep the seed labels as they are
    fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD) | drawn
    fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    fg = _fill_holes(_largest_component(fg))
    # Upsample as a smooth field and cut at 0.5 so the outline is not staircased, then soften 1-2 px.
    big = cv2.resize(fg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) if scale < 1 else fg.astype(np.float32)
    if scale < 1:
        big = cv2.GaussianBlur(big, (0, 0), 0.5 / scale)
    hard = big > 0.5
    if models is not None:
        keep = (gc == cv2.GC_FGD) | drawn
        keep = cv2.resize(keep.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool) if scale < 1 else keep
        hard = _refine_edge(rgb, hard, keep, *models, band=max(2, int(np.ceil(1.5 / scale))))
    alpha = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), 0.8)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def _gmm_log_likelihood(model: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Log-likelihood of (N, 3) float64 BGR pixels under one of GrabCut's 5-component colour models
    (65 numbers: weights, means, covariances)."""
    m = model.reshape(-1)
    weights, means, covs = m[:5], m[5:20].reshape(5, 3), m[20:65].reshape(5, 3, 3)
    out = np.full(len(pixels), -np.inf)
    for k in range(5):
        if weights[k] <= 0:
            continue
        cov = covs[k] + np.eye(3) * 1e-2
        diff = pixels - means[k]
        inv = np.linalg.inv(cov)
        maha = np.einsum("ni,ij,nj->n", diff, inv, diff)
        log_k = np.log(weights[k]) - 0.5 * (maha + np.log(np.linalg.det(cov)) + 3 * np.log(2 * np.pi))
        out = np.logaddexp(out, log_k)
    return out


EDGE_PRIOR = 1.0  # log-odds in favour of the label GrabCut gave at its working size


def _refine_edge(rgb: np.ndarray, hard: np.ndarray, keep: np.ndarray, fgd: np.ndarray, bgd: np.ndarray,
                 band: int) -> np.ndarray:
    """Re-decide the pixels within ``band`` of the outline at full size by GrabCut's own colour
    models: GrabCut ran on a reduced copy, where a gap between an arm and the body or between the
    legs a few pixels wide is smoothed shut and an outline is off by a working pixel. Pixels that
    were sure subject (``keep``) stay; the rest of the subject is kept whole (largest component,
    no small holes)."""
    k = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    u8 = hard.astype(np.uint8)
    unsure = (cv2.dilate(u8, k) > 0) & ~(cv2.erode(u8, k) > 0) & ~keep
    ys, xs = np.nonzero(unsure)
    if len(ys) == 0:
        return hard
    pixels = rgb[ys, xs, ::-1].astype(np.float64)
    odds = _gmm_log_likelihood(fgd, pixels) - _gmm_log_likelihood(bgd, pixels)
    odds += np.where(hard[ys, xs], EDGE_PRIOR, -EDGE_PRIOR)
    out = hard.copy()
    out[ys, xs] = odds > 0
    out = cv2.medianBlur(out.astype(np.uint8), 3).astype(bool)
    out = _largest_component(out)
    # Fill holes smaller than a speck (a mis-judged pixel or two), keep real gaps open.
    holes = _fill_holes(out) & ~out
    count, labels, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=4)
    small_holes = np.isin(labels, 1 + np.nonzero(stats[1:, cv2.CC_STAT_AREA] < 4 * band * band)[0])
    return out | small_holes


def _alpha_bbox(alpha: np.ndarray, pad: int) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(alpha > 1.0 / 255.0)
    if len(xs) == 0:
        raise ValueError("empty alpha mask: nothing to cut out")
    return int(xs.min()) - pad, int(ys.min()) - pad, int(xs.max()) + 1 + pad, int(ys.max()) + 1 + pad


def cutout(rgb: np.ndarray, alpha: np.ndarray, pad: int = 16) -> np.ndarray:
    """RGBA uint8 cropped to the alpha's bounding box plus ``pad`` transparent pixels each side."""
    x0, y0, x1, y1 = _alpha_bbox(alpha, pad)
    h, w = rgb.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    region = out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
    region[..., :3] = rgb[sy0:sy1, sx0:sx1]
    region[..., 3] = np.round(np.clip(alpha[sy0:sy1, sx0:sx1], 0, 1) * 255).astype(np.uint8)
    return out


def cutout_meta(meta: dict, alpha: np.ndarray, pad: int = 16) -> dict:
    """The metadata of :func:`cutout`'s result: landmarks, box and drawn regions in its coordinates."""
    x0, y0, x1, y1 = _alpha_bbox(alpha, pad)
    out = copy.deepcopy(meta)
    out["landmarks"] = {k: [float(v[0]) - x0, float(v[1]) - y0] for k, v in meta.get("landmarks", {}).items()}
    if "box" in meta:
        bx, by, bw, bh = meta["box"]
        out["box"] = [bx - x0, by - y0, bw, bh]
    out["drawn"] = [[[p[0] - x0, p[1] - y0] for p in poly] for poly in meta.get("drawn", [])]
    if meta.get("outline"):
        out["outline"] = [[p[0] - x0, p[1] - y0] for p in meta["outline"]]
    out["size"] = [x1 - x0, y1 - y0]
    return out
