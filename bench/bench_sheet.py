"""Benchmark: time and size of one A4 sticker sheet of 6, 9 and 12 stickers (target <= 1.5 s).

Run: ``cd /work/main && .venv/bin/python bench/bench_sheet.py [--repeat 3]``

Posters are skimage's public-domain/CC0 photos cut out with a soft alpha (tests/fulfillment
support); each sticker on the sheet is a distinct buddy (worst case: nothing is shared between
copies), so ``n`` stickers means ``n`` artworks resampled and ``n`` contours traced. Reports the
best of ``--repeat`` runs, plus a breakdown of one run (artwork preparation vs PDF writing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from skimage import data  # noqa: E402

from fulfillment.geometry import CellSpec  # noqa: E402
from fulfillment.sheet import Sticker, prepare_artwork, render_sheet  # noqa: E402
from tests.fulfillment.support import SHARE_BASE, cut_out, png_bytes  # noqa: E402

TARGET_SECONDS = 1.5


def distinct_stickers(count: int) -> list[Sticker]:
    """``count`` different posters: the three photos, each cropped differently per sticker.

    Distinct pixels matter: identical images are stored once in the PDF, which would flatter
    both the time and the size.
    """
    photos = [data.astronaut(), data.chelsea(), data.coffee()]
    stickers = []
    for i in range(count):
        photo = photos[i % len(photos)]
        shift = 6 * (i // len(photos))
        poster = png_bytes(cut_out(photo[shift:, shift:]))
        stickers.append(Sticker(poster, f"{SHARE_BASE}bench{i:04d}", f"Buddy number {i + 1}"))
    return stickers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variant", choices=["print", "home"], default="print")
    args = parser.parse_args()

    render_sheet(distinct_stickers(1), order_label="warm-up")  # font registration, imports
    # Wall time on a shared machine depends on the neighbours; CPU time (this process) much less.
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'stickers':>8} {'best s':>8} {'median s':>9} {'CPU s':>7} {'prepare s':>10} {'PDF KiB':>8}  target {TARGET_SECONDS} s")
    worst = 0.0
    for count in (6, 9, 12):
        stickers = distinct_stickers(count)
        timings, cpu_times, size = [], [], 0
        for _ in range(args.repeat):
            start, cpu_start = time.perf_counter(), time.process_time()
            pdf = render_sheet(stickers, size="A4", variant=args.variant, order_label="BENCH")
            timings.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
            size = len(pdf)
        start = time.perf_counter()
        for sticker in stickers:
            prepare_artwork(sticker.poster_png, CellSpec())
        prepare = time.perf_counter() - start
        best = min(timings)
        worst = max(worst, best)
        print(
            f"{count:>8} {best:>8.2f} {statistics.median(timings):>9.2f} {statistics.median(cpu_times):>7.2f}"
            f" {prepare:>10.2f} {size / 1024:>8.0f}"
        )
    print("PASS" if worst <= TARGET_SECONDS else "SLOW", f"(slowest best-of: {worst:.2f} s)")
    return 0 if worst <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
