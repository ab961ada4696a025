"""Benchmark of the web transcode: encode seconds (median of 3) and sizes per format.

Two 120-frame 512 px RGBA clips at 24 fps (five seconds):
- ``disc``: the flat shaded disc of the media tests, moving on a transparent background;
- ``cartoon``: a cartoonised photo (skimage's public-domain astronaut; bilateral filter,
  colour quantisation, ink lines) cut out by a soft oval mask and bobbing, which is closer to
  a real buddy in detail and so in file size.

Each format is encoded alone (``parallel=1``) so the seconds are per encoder, then all four
together with the default ``parallel=2`` for the wall time a transcode task takes.

Run: ``cd /work/main && .venv/bin/python bench/bench_transcode.py``
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from include.media.frames import write_frames_video  # noqa: E402
from include.media.transcode import WEB_FORMATS, transcode  # noqa: E402
from tests.include.media.conftest import moving_disc_clip  # noqa: E402

FRAMES = 120
SIZE = 512
FPS = 24
REPEATS = 3


def cartoon_clip(frames: int = FRAMES, size: int = SIZE) -> np.ndarray:
    from skimage import data

    picture = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    picture = cv2.bilateralFilter(picture, 9, 75, 75)
    picture = (picture // 32) * 32 + 16
    gray = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
    ink = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 5) == 0
    picture[ink] = 20
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    oval = np.hypot((xx - size / 2) / (0.32 * size), (yy - size / 2) / (0.42 * size))
    alpha = np.round(np.clip((1 - oval) * size / 8, 0, 1) * 255).astype(np.uint8)
    rgba = np.dstack([picture, alpha])
    rgba[alpha == 0, :3] = 0  # a matting stage leaves no colour where nothing is visible
    clip = np.empty((frames, size, size, 4), np.uint8)
    for index in range(frames):
        phase = 2 * np.pi * index / frames
        shift = np.float32([[1, 0, 10 * np.sin(phase)], [0, 1, 14 * np.sin(2 * phase)]])
        clip[index] = cv2.warpAffine(rgba, shift, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    return clip


def bench_clip(label: str, clip: np.ndarray, workdir: Path) -> None:
    src = workdir / f"{label}.mkv"
    started = time.perf_counter()
    write_frames_video(clip, str(src), fps=FPS)
    print(f"[{label}] lossless intermediate: {time.perf_counter() - started:.2f} s, {src.stat().st_size / 1e6:.2f} MB")

    @contextmanager
    def open_output(name: str):
        with open(workdir / f"{label}-{name}", "wb") as file:
            yield file

    for fmt in WEB_FORMATS:
        runs = [transcode(str(src), open_output, FPS, formats=[fmt], parallel=1)[fmt] for _ in range(REPEATS)]
        seconds = statistics.median(asset.seconds for asset in runs)
        print(f"[{label}] {fmt:6s} {seconds:6.2f} s  {runs[-1].bytes_written / 1e3:8.1f} kB  ({runs[-1].name})")
    started = time.perf_counter()
    transcode(str(src), open_output, FPS)
    print(f"[{label}] all formats, parallel=2: {time.perf_counter() - started:.2f} s wall")


def main() -> None:
    print(f"{FRAMES} frames, {SIZE}x{SIZE} RGBA, {FPS} fps; median of {REPEATS}")
    with tempfile.TemporaryDirectory(prefix="bench-transcode-") as tmp:
        workdir = Path(tmp)
        bench_clip("disc", moving_disc_clip(FRAMES, SIZE), workdir)
        bench_clip("cartoon", cartoon_clip(), workdir)


if __name__ == "__main__":
    main()
