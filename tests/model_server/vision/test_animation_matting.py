"""Tests for model_server/vision/animation.py and model_server/vision/matting.py (small sizes, fast)."""

import cv2
import numpy as np
import pytest

from bench.quality_set import figure
from model_server.vision import animation
from model_server.vision.animation import MOTIONS, animate
from model_server.vision.matting import composite_on_key, first_copies, key_matte, pick_key_color


@pytest.fixture(scope="module")
def character():
    rgba, landmarks = figure(300)
    return rgba, {"size": [rgba.shape[1], rgba.shape[0]], "subject": "person",
                  "landmarks": {k: list(v) for k, v in landmarks.items()}}


@pytest.mark.parametrize("motion", MOTIONS)
def test_animation_is_a_seamless_loop(character, motion):
    rgba, meta = character
    frames = animate(rgba, meta, motion, seconds=2.0, fps=12, size=128)
    assert frames.shape == (24, 128, 128, 4) and frames.dtype == np.uint8
    steps = [np.abs(frames[i + 1].astype(int) - frames[i]).mean() for i in range(len(frames) - 1)]
    wrap = np.abs(frames[0].astype(int) - frames[-1]).mean()
    assert max(steps) > 0  # it moves
    # The jump from the last frame to the first is a step like its neighbours (no seam).
    assert wrap <= 1.3 * max(steps[0], steps[-1]) + 0.05


def test_a_loop_of_whole_beats_draws_each_pose_once(character, monkeypatch):
    rgba, meta = character
    calls = []
    draw = animation.Renderer.render
    monkeypatch.setattr(animation.Renderer, "render", lambda self, *a: calls.append(1) or draw(self, *a))
    # dance: one beat a second, so a 3 s loop repeats its first second's poses twice (blinks aside).
    frames = animate(rgba, meta, "dance", seconds=3.0, fps=12, size=128)
    assert len(frames) == 36 and 12 <= len(calls) < 20
    blinks = animation._blink_frames(36, 12)
    repeated = [i for i in range(12, 36) if i not in blinks and i % 12 not in blinks]
    assert repeated and all(np.array_equal(frames[i], frames[i % 12]) for i in repeated)


def test_first_copies_finds_exact_repeats_only():
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    nearly_a = a.copy()
    nearly_a[3, 3, 1] ^= 1
    assert first_copies(np.stack([a, b, a, nearly_a, b, a])) == [0, 1, 0, 3, 1, 0]


def test_mattes_of_repeated_frames_are_the_mattes_of_their_first_copies(character):
    rgba, meta = character
    frames = animate(rgba, meta, "wave", seconds=1.0, fps=6, size=96)
    key = pick_key_color(rgba)
    distinct = composite_on_key(frames, key)
    order = [0, 1, 2, 1, 3, 0, 4, 5, 2]
    # Each frame on its own gives the same matte as inside a clip of repeats.
    alone = [key_matte(np.concatenate([distinct[:1], distinct[i:i + 1]]), key)[1] for i in range(len(distinct))]
    looped = key_matte(distinct[order], key)
    assert all(np.array_equal(looped[j], alone[i]) for j, i in enumerate(order))
    assert np.array_equal(composite_on_key(frames[order], key), distinct[order])


@pytest.fixture(scope="module")
def bright_object(synthetic_figure):
    """The flat, bright synthetic figure without a pose (animated as one piece)."""
    img, mask = synthetic_figure
    return np.dstack([img, (cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.8) * 255).astype(np.uint8)]), {}


def test_animation_has_no_dark_fringes(bright_object):
    rgba, meta = bright_object
    frames = animate(rgba, meta, "sway", seconds=1.0, fps=6, size=128)
    edge = (frames[..., 3] > 20) & (frames[..., 3] < 235)
    # Figure colours are bright (min channel sum > 250): un-premultiplied edges must stay bright.
    assert frames[..., :3][edge].astype(int).sum(axis=1).mean() > 250


def test_key_matte_recovers_alpha_after_lossy_round_trip(bright_object):
    rgba, meta = bright_object
    frames = animate(rgba, meta, "dance", seconds=0.5, fps=12, size=160)
    key = pick_key_color(frames[0])
    on_key = composite_on_key(frames, key)
    lossy = np.stack([cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], 1) for f in on_key])
    for composite in (on_key, lossy):
        out = key_matte(composite, key)
        truth, got = frames[..., 3] / 255.0, out[..., 3] / 255.0
        assert np.abs(truth - got).mean() < 0.015  # 0.001-0.0025 at 512 px; edges weigh more at 160
        iou = ((truth > 0.5) & (got > 0.5)).sum() / ((truth > 0.5) | (got > 0.5)).sum()
        assert iou > 0.9  # 0.993 at 512 px after JPEG; small 160 px frames suffer chroma subsampling
        # Decontaminated: opaque-ish pixels carry no key colour.
        solid = got > 0.5
        key_dist = np.linalg.norm(out[..., :3][solid].astype(float) - key, axis=1)
        assert np.percentile(key_dist, 5) > 60


def test_pick_key_color_avoids_character_colours():
    green_guy = np.zeros((20, 20, 4), np.uint8)
    green_guy[..., 1] = 255
    green_guy[..., 3] = 255
    assert pick_key_color(green_guy) != (0, 255, 0)


@pytest.mark.parametrize("motion", MOTIONS)
def test_character_fills_the_frame_and_never_clips(character, motion):
    rgba, meta = character
    frames = animate(rgba, meta, motion, seconds=2.0, fps=12, size=160)
    seen = frames[..., 3] > 0
    # Nothing on the border in any frame: the motion never leaves the canvas.
    assert not seen[:, 0].any() and not seen[:, -1].any() and not seen[:, :, 0].any() and not seen[:, :, -1].any()
    rows = np.nonzero(seen[0].any(axis=1))[0]
    rest_height = (rows.max() - rows.min() + 1) / 160
    limit = 0.60 if motion in ("jump", "dance", "wave", "walk") else 0.75  # a raised arm and a jump need headroom
    assert limit <= rest_height <= 0.95  # frame 0 of a wave already has its arm up
