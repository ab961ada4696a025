"""A strip of frames (one PNG) of one test photo's buddy in each motion, for the README.

The photo is skimage's public-domain astronaut through the local pipeline's own stages
(analyze -> cartoonize -> drawn legs -> segment -> rig); each row is one motion's loop (idle,
wave, jump, dance, walk), six frames evenly spaced over its first two seconds, on a light
checkerboard so transparency shows.

Run: ``make frames`` (writes ``docs/motion_strip.png``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_server.vision.analysis import analyze  # noqa: E402
from model_server.vision.animation import animate_loops  # noqa: E402
from model_server.vision.cartoon import cartoonize, expand_full_body  # noqa: E402
from model_server.vision.segmentation import cutout, cutout_meta, segment_subject  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "motion_strip.png"
MOTIONS = ("idle", "wave", "jump", "dance", "walk")
SIZE, FPS, SECONDS, COLUMNS = 256, 24, 5.0, 6


def checkerboard(size: int, cell: int = 16) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    board = np.where(((x // cell) + (y // cell)) % 2 == 0, 244, 228).astype(np.float32)
    return np.dstack([board] * 3)


def main() -> None:
    from skimage import data

    analysis = analyze(data.astronaut())
    cartoon, meta = cartoonize(analysis.image, analysis.meta(), "classic")
    cartoon, meta = expand_full_body(cartoon, meta)
    alpha = segment_subject(cartoon, meta)
    loops = animate_loops(cutout(cartoon, alpha), cutout_meta(meta, alpha), MOTIONS, SECONDS, FPS, SIZE)
    back = checkerboard(SIZE)
    rows = []
    for motion in MOTIONS:
        tiles = []
        for i in np.linspace(0, 2 * FPS, COLUMNS, endpoint=False).astype(int):
            frame = loops[motion][i].astype(np.float32)
            a = frame[..., 3:] / 255.0
            tile = (frame[..., :3] * a + back * (1 - a)).astype(np.uint8)
            cv2.putText(tile, motion if i == 0 else "", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (40, 40, 40), 1, cv2.LINE_AA)
            tiles.append(tile)
        rows.append(np.hstack(tiles))
    OUT.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(OUT), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
