"""Quality benchmark of the local character pipeline over the project's ground-truth set
(``bench/quality_set.py``): mask IoU, empty scenes rejected, loop seams, triangle flips, and CPU
seconds per stage.

- Mask IoU: people with a known alpha (the astronaut with its shipped alpha, a drawn figure with
  an exact one) on plain, indoor, outdoor and busy backdrops: ``analyze`` then
  ``segment_subject`` on the photo, IoU of alpha > 0.5 against the truth. Goal: median >= 0.95.
- Empty scenes (procedural rooms, skies, busy shapes, flat walls; skimage's bricks, grass,
  gravel, rocket): the share that ``analyze`` refuses. Goal: 100 %. Objects (coffee, cat) must pass.
- Loops, on the astronaut's buddy (analyze -> cartoonize -> expand legs -> segment -> rig): per
  motion the seam (the largest vertex distance, in pixels at 512 px, between frame 0 and the pose
  at the loop's end, and the last->first frame change over the median frame change), triangle
  flips before easing and in the rendered frames (goal 0).
- CPU seconds (process time, all threads) per stage for that photo; animate at 5 s, 24 fps, 512 px.

Run: ``.venv/bin/python -m bench.bench_quality``
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quality_set import (  # noqa: E402
    BACKGROUND_KINDS,
    astronaut_cutout,
    background,
    composite,
    empty_scenes,
    figure,
)
from model_server.vision import motions  # noqa: E402
from model_server.vision.analysis import analyze  # noqa: E402
from model_server.vision.animation import WALK, _free_arm, _pose, _rest_angles, _rotations, perform, render  # noqa: E402
from model_server.vision.cartoon import cartoonize, expand_full_body  # noqa: E402
from model_server.vision.errors import VisionError  # noqa: E402
from model_server.vision.matting import composite_on_key, pick_key_color  # noqa: E402
from model_server.vision.rig import build_rig, flipped  # noqa: E402
from model_server.vision.segmentation import cutout, cutout_meta, segment_subject  # noqa: E402

SECONDS, FPS, SIZE = 5.0, 24, 512


def cpu(call):
    started = time.process_time()
    result = call()
    return result, time.process_time() - started


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def people() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    astro = astronaut_cutout()
    drawn, _ = figure(360)
    cases = {}
    for i, kind in enumerate(BACKGROUND_KINDS):
        cases[f"astronaut/{kind}"] = composite(astro, background(kind, 512, 512, 10 + i), 0, 0)
        cases[f"drawn/{kind}"] = composite(drawn, background(kind, 480, 640, 20 + i), 170, 80)
    return cases


def mask_quality() -> list[str]:
    lines, scores = [], []
    for name, (photo, truth) in people().items():
        try:
            analysis = analyze(photo)
            alpha = segment_subject(analysis.image, analysis.meta())
            score = iou(alpha > 0.5, truth > 0.5)
            lines.append(f"| {name} | {analysis.subject} | {score:.3f} |")
        except VisionError as exc:
            score = 0.0
            lines.append(f"| {name} | refused ({exc.code}) | 0 |")
        scores.append(score)
    print("| person photo | found as | mask IoU |\n|---|---|---|")
    print("\n".join(lines))
    print(f"\nmask IoU median {statistics.median(scores):.3f} (min {min(scores):.3f}) over {len(scores)} photos; goal >= 0.95\n")
    return lines


def honesty() -> None:
    from skimage import data

    refused = {}
    for name, image in empty_scenes().items():
        try:
            analysis = analyze(image)
            refused[name] = f"accepted as {analysis.subject}"
        except VisionError as exc:
            refused[name] = exc.code
    ok = [n for n, v in refused.items() if v == "no_usable_subject"]
    print(f"empty scenes refused: {len(ok)}/{len(refused)} ({100 * len(ok) / len(refused):.0f} %); goal 100 %")
    for name, verdict in refused.items():
        if verdict != "no_usable_subject":
            print(f"  not refused: {name}: {verdict}")
    for name, image in (("coffee", data.coffee()), ("cat", data.chelsea())):
        try:
            print(f"object {name}: accepted as {analyze(image).subject}")
        except VisionError as exc:
            print(f"object {name}: REFUSED ({exc.code})")
    print()


def loops_and_cpu() -> None:
    from skimage import data

    photo = data.astronaut()
    analysis, t_analyze = cpu(lambda: analyze(photo))
    (cartoon, meta), t_cartoon = cpu(lambda: cartoonize(analysis.image, analysis.meta(), "classic"))
    (cartoon, meta), t_expand = cpu(lambda: expand_full_body(cartoon, meta))
    alpha, t_segment = cpu(lambda: segment_subject(cartoon, meta))
    rgba, rgba_meta = cutout(cartoon, alpha), cutout_meta(meta, alpha)
    n = round(SECONDS * FPS)
    print("| motion | seam: pose gap at loop end (px) | seam: last->first change / median change | flips before easing | flips rendered | bones eased | animate CPU s |")
    print("|---|---|---|---|---|---|---|")
    timings = {}
    for motion in ("idle", "wave", "jump", "dance", "walk"):
        started = time.process_time()
        rig = build_rig(rgba, rgba_meta)
        clip = motions.clip_for(motion, rig.has("spine"))
        mirror = _free_arm(rig) == "right"
        perf = perform(rig, clip, SECONDS, n, mirror=mirror)
        frames = render(rgba, rgba_meta, perf, rig, SIZE, FPS)
        timings[motion] = time.process_time() - started
        # The pose at the very end of the loop (phase = whole beats, not wrapped) against frame 0.
        end_values = clip.at(1.0)
        end_values = motions.mirrored(end_values) if mirror else end_values
        feet = np.array([rig.vertices[rig.soles, 0].mean(), rig.ground])
        turns = {k: perf.ease.get(k, 0.0) * a for k, a in _rotations(rig, end_values, clip, _rest_angles(rig)).items()}
        scale = SIZE * 0.84 / rig.height
        gap = float(np.abs(_pose(rig, turns, end_values, feet) - perf.vertices[0]).max()) * scale
        changes = [np.abs(frames[i + 1].astype(np.int16) - frames[i]).mean() for i in range(n - 1)]
        wrap = float(np.abs(frames[0].astype(np.int16) - frames[-1]).mean()) / max(statistics.median(changes), 1e-9)
        rendered = sum(int(flipped(rig, v).sum()) for v in perf.vertices)
        eased = ", ".join(f"{k} {v:.2f}" for k, v in perf.ease.items() if v < 1) or "none"
        print(f"| {motion} | {gap:.2e} | {wrap:.2f} | {perf.raw_flips} | {rendered} | {eased} | {timings[motion]:.2f} |")
    key = pick_key_color(rgba)
    _, t_key = cpu(lambda: composite_on_key(frames, key))
    print("\n| stage (astronaut, CPU seconds) | s |\n|---|---|")
    for stage, seconds in (("analyze", t_analyze), ("cartoonize", t_cartoon), ("expand legs", t_expand),
                           ("segment", t_segment), ("animate: chosen loop (median of 4 motions)",
                                                    statistics.median(v for k, v in timings.items() if k != WALK)),
                           ("animate: walk loop (extra)", timings[WALK]), ("composite on key (one loop)", t_key)):
        print(f"| {stage} | {seconds:.2f} |")


def main() -> None:
    cv2.setNumThreads(2)
    mask_quality()
    honesty()
    loops_and_cpu()


if __name__ == "__main__":
    main()
