"""Benchmark of the vision stages: median-of-3 seconds per call on one photo, end to end.

The photo is skimage's public-domain astronaut upscaled to 1024 px (the product's upload
size). Each stage gets the previous stage's output, as the generation chain passes it on:
analyze -> cartoonize -> segment_subject (+ cutout) -> animate (120 frames, 512 px, the
default five seconds at 24 fps) -> composite_on_key -> key_matte. The first call of each
stage is a warm-up (model loading is the worker initializer's job, not the stage's) and is
printed separately.

Run: ``cd /work/main && .venv/bin/python bench/bench_vision.py [motion]``
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_server.vision.analysis import analyze  # noqa: E402
from model_server.vision.animation import animate  # noqa: E402
from model_server.vision.cartoon import cartoonize  # noqa: E402
from model_server.vision.matting import composite_on_key, key_matte, pick_key_color  # noqa: E402
from model_server.vision.segmentation import cutout, cutout_meta, segment_subject  # noqa: E402

REPEATS = 3
PHOTO_SIDE = 1024
SECONDS, FPS, SIZE = 5.0, 24, 512


def timed(name: str, call: Callable[[], object]) -> object:
    started = time.perf_counter()
    result = call()
    first = time.perf_counter() - started
    runs = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = call()
        runs.append(time.perf_counter() - started)
    print(f"{name:<18} median {statistics.median(runs):6.3f} s   (first call {first:6.3f} s)", flush=True)
    return result


def main(motion: str = "wave") -> None:
    from skimage import data

    photo = cv2.resize(data.astronaut(), (PHOTO_SIDE, PHOTO_SIDE), interpolation=cv2.INTER_CUBIC)
    print(f"astronaut {PHOTO_SIDE} px; animation {motion!r} {int(SECONDS * FPS)} frames at {SIZE} px")
    analysis = timed("analyze", lambda: analyze(photo))
    cartoon, meta = timed("cartoonize", lambda: cartoonize(analysis.image, analysis.meta(), "classic"))
    alpha = timed("segment_subject", lambda: segment_subject(cartoon, meta))
    rgba, rgba_meta = cutout(cartoon, alpha), cutout_meta(meta, alpha)
    frames = timed("animate", lambda: animate(rgba, rgba_meta, motion, SECONDS, FPS, SIZE))
    key = pick_key_color(rgba)
    keyed = timed("composite_on_key", lambda: composite_on_key(frames, key))
    timed("key_matte", lambda: key_matte(keyed, key))


if __name__ == "__main__":
    main(*sys.argv[1:2])
