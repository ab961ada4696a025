"""The ground-truth set of the quality benchmark, made here (no downloads): every image comes with
its true alpha, or is an empty scene.

- People: skimage's public-domain astronaut cut out once with the mask shipped beside this file
  (``astronaut_alpha.png``, see ``derive_astronaut_alpha``), and a drawn cartoon figure with an
  exact alpha; each composited onto backgrounds of four kinds (plain, indoor, outdoor, busy).
- Objects: skimage's CC0 ``coffee`` and ``chelsea`` (no true alpha: judged on acceptance only).
- Empty scenes: procedural rooms, skies with a horizon, busy textures, flat walls, and skimage
  photos that hold no single subject (bricks, grass, gravel, a rocket launch pad's sky).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ASTRONAUT_ALPHA = Path(__file__).with_name("astronaut_alpha.png")
BACKGROUND_KINDS = ("plain", "indoor", "outdoor", "busy")


def figure(height: int = 420, arms: str = "down", seed: int = 0) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """A drawn cartoon person (RGBA, exact alpha) standing on its feet, and its pose landmarks.

    ``arms``: "down" (hanging by the sides, a little away from the body) or "up" (one raised).
    """
    rng = np.random.default_rng(seed)
    u = height / 420.0
    w = int(300 * u)
    img = np.zeros((height, w, 4), np.uint8)
    cx = w / 2
    shirt = tuple(int(v) for v in rng.integers(40, 220, 3)) + (255,)
    trousers = (50, 60, 120, 255)
    skin = (236, 190, 160, 255)
    ink = (30, 24, 34, 255)

    def p(x, y):
        return int(round(cx + x * u)), int(round(y * u))

    lm = {}

    def mark(name, x, y):
        lm[name] = (cx + x * u, y * u)

    # legs and shoes
    for side, sx in (("right", -1), ("left", 1)):
        hip, knee, ankle = (sx * 24, 235), (sx * 27, 315), (sx * 29, 385)
        cv2.line(img, p(*hip), p(*ankle), ink, int(38 * u), cv2.LINE_AA)
        cv2.line(img, p(*hip), p(*ankle), trousers, int(32 * u), cv2.LINE_AA)
        cv2.ellipse(img, p(sx * 38, 396), (int(30 * u), int(14 * u)), 0, 0, 360, ink, -1, cv2.LINE_AA)
        mark(f"{side}_hip", *hip)
        mark(f"{side}_knee", *knee)
        mark(f"{side}_ankle", *ankle)
        mark(f"{side}_heel", sx * 26, 400)
        mark(f"{side}_foot_index", sx * 58, 402)
    # torso
    cv2.rectangle(img, p(-58, 110), p(58, 250), ink, -1, cv2.LINE_AA)
    cv2.rectangle(img, p(-55, 113), p(55, 247), shirt, -1, cv2.LINE_AA)
    # arms
    for side, sx in (("right", -1), ("left", 1)):
        shoulder = (sx * 60, 122)
        if arms == "up" and side == "left":
            elbow, wrist = (sx * 110, 80), (sx * 118, 20)
        else:
            elbow, wrist = (sx * 82, 190), (sx * 92, 255)
        for a, b in ((shoulder, elbow), (elbow, wrist)):
            cv2.line(img, p(*a), p(*b), ink, int(30 * u), cv2.LINE_AA)
            cv2.line(img, p(*a), p(*b), shirt, int(24 * u), cv2.LINE_AA)
        cv2.circle(img, p(*wrist), int(15 * u), ink, -1, cv2.LINE_AA)
        cv2.circle(img, p(*wrist), int(12 * u), skin, -1, cv2.LINE_AA)
        mark(f"{side}_shoulder", *shoulder)
        mark(f"{side}_elbow", *elbow)
        mark(f"{side}_wrist", *wrist)
    # head: face, hair, eyes, mouth
    cv2.circle(img, p(0, 62), int(50 * u), ink, -1, cv2.LINE_AA)
    cv2.circle(img, p(0, 62), int(47 * u), skin, -1, cv2.LINE_AA)
    cv2.ellipse(img, p(0, 46), (int(48 * u), int(34 * u)), 0, 180, 360, (90, 50, 30, 255), -1, cv2.LINE_AA)
    for side, sx in (("right", -1), ("left", 1)):
        cv2.circle(img, p(sx * 17, 66), max(2, int(6 * u)), ink, -1, cv2.LINE_AA)
        mark(f"{side}_eye", sx * 17, 66)
        mark(f"{side}_ear", sx * 46, 66)
        mark(f"{side}_mouth", sx * 10, 90)
    cv2.ellipse(img, p(0, 86), (int(14 * u), int(8 * u)), 0, 10, 170, ink, max(1, int(3 * u)), cv2.LINE_AA)
    mark("nose", 0, 76)
    return img, lm


def background(kind: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A procedural RGB backdrop: plain (a soft gradient), indoor (a wall, a floor, a door, a
    window frame), outdoor (sky, hills, grass) or busy (many overlapping coloured shapes)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "plain":
        base = rng.uniform(150, 235, 3)
        img = base[None, None, :] + (y / height * 25)[..., None] + rng.normal(0, 2, (height, width, 3))
    elif kind == "indoor":
        wall, floor = rng.uniform(140, 220, 3), rng.uniform(70, 140, 3)
        img = np.where((y > 0.72 * height)[..., None], floor, wall).astype(np.float32)
        img = img + rng.normal(0, 3, img.shape)
        img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
        cv2.rectangle(img, (int(0.05 * width), int(0.2 * height)), (int(0.25 * width), int(0.72 * height)),
                      tuple(int(v) for v in rng.uniform(60, 160, 3)), -1)
        cv2.rectangle(img, (int(0.7 * width), int(0.15 * height)), (int(0.95 * width), int(0.45 * height)), (245, 245, 240), -1)
        cv2.rectangle(img, (int(0.7 * width), int(0.15 * height)), (int(0.95 * width), int(0.45 * height)), (90, 70, 50), 6)
        return img
    elif kind == "outdoor":
        sky = np.array([120, 170, 235], np.float32) + (y / height * 60)[..., None]
        hill = 0.6 * height + 0.05 * height * np.sin(x / width * 6.0 + rng.uniform(0, 6))
        grass = np.array([70, 140, 60], np.float32) + rng.normal(0, 12, (height, width, 3))
        img = np.where((y > hill)[..., None], grass, sky)
    elif kind == "busy":
        img = np.full((height, width, 3), rng.uniform(80, 200, 3), np.float32)
        img = np.ascontiguousarray(img.astype(np.uint8))
        for _ in range(60):
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
            if rng.random() < 0.5:
                cv2.circle(img, (cx, cy), int(rng.integers(10, height // 6)), colour, -1)
            else:
                cv2.rectangle(img, (cx, cy), (cx + int(rng.integers(10, width // 4)), cy + int(rng.integers(10, height // 4))), colour, -1)
        return img
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    return np.clip(img, 0, 255).astype(np.uint8)


def composite(rgba: np.ndarray, backdrop: np.ndarray, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """(photo, true alpha in [0, 1]) of ``rgba`` pasted at (x, y) on ``backdrop``."""
    out = backdrop.astype(np.float32).copy()
    alpha = np.zeros(backdrop.shape[:2], np.float32)
    h, w = rgba.shape[:2]
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out[y:y + h, x:x + w] = rgba[..., :3] * a + out[y:y + h, x:x + w] * (1 - a)
    alpha[y:y + h, x:x + w] = a[..., 0]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), alpha


def astronaut_cutout() -> np.ndarray:
    """skimage's astronaut as RGBA with the shipped alpha."""
    from skimage import data

    alpha = cv2.imread(str(ASTRONAUT_ALPHA), cv2.IMREAD_GRAYSCALE)
    return np.dstack([data.astronaut(), alpha])


def empty_scenes() -> dict[str, np.ndarray]:
    """Photos with no person and no single character-like subject."""
    from skimage import data

    scenes = {f"{kind}_{seed}": background(kind, 480, 640, seed) for kind in BACKGROUND_KINDS for seed in (1, 2)}
    scenes.update({"bricks": np.dstack([data.brick()] * 3), "grass": np.dstack([data.grass()] * 3),
                   "gravel": np.dstack([data.gravel()] * 3), "rocket": data.rocket()})
    return scenes


def derive_astronaut_alpha() -> np.ndarray:
    """How ``astronaut_alpha.png`` was made (run once; the PNG is shipped): the pose model's person
    mask seeds a full-resolution GrabCut (10 iterations), the largest component, holes filled.
    The benchmark's person IoU on astronaut composites therefore measures how well the pipeline
    finds the same person again on other backgrounds; the drawn figure's alpha is exact."""
    from skimage import data

    from model_server.vision._pose import detect_pose

    rgb = data.astronaut()
    prob = detect_pose(rgb).mask
    gc = np.full(prob.shape, cv2.GC_BGD, np.uint8)
    gc[cv2.dilate((prob > 0.2).astype(np.uint8), np.ones((21, 21), np.uint8)) > 0] = cv2.GC_PR_BGD
    gc[prob > 0.5] = cv2.GC_PR_FGD
    gc[cv2.erode((prob > 0.9).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), gc, None, bgd, fgd, 10, cv2.GC_INIT_WITH_MASK)
    fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    fg = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    flood = np.pad(fg, 1).copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    fg = fg | (flood[1:-1, 1:-1] == 0)
    return (cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 0.7) * 255 + 0.5).astype(np.uint8)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    cv2.imwrite(str(ASTRONAUT_ALPHA), derive_astronaut_alpha())
    print(f"wrote {ASTRONAUT_ALPHA}")
