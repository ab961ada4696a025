"""Tests for model_server/vision/segmentation.py."""

import numpy as np
import pytest

from bench.quality_set import background, composite, figure

from model_server.vision.analysis import analyze
from model_server.vision.cartoon import cartoonize, expand_full_body
from model_server.vision.imageio import encode_png, read_png_meta
from model_server.vision.segmentation import cutout, cutout_meta, segment_subject


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_synthetic_figure_mask_iou(synthetic_figure):
    img, truth = synthetic_figure
    ys, xs = np.nonzero(truth)
    meta = {"subject": "object", "box": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]}
    alpha = segment_subject(img, meta)
    assert alpha.dtype == np.float32 and alpha.shape == truth.shape
    assert _iou(alpha > 0.5, truth) >= 0.9
    # Soft edge: some partial values, but only along the outline.
    partial = (alpha > 0.05) & (alpha < 0.95)
    assert 0 < partial.sum() < 0.15 * truth.sum()


@pytest.mark.parametrize("kind", ["plain", "indoor", "outdoor"])
def test_drawn_figure_on_a_backdrop_keeps_hair_and_the_gaps_between_limbs(kind):
    """Found as an object (no photo-like pose): the box seeds GrabCut, the full-size edge
    refinement opens the few-pixel gaps between arms and body and between the legs."""
    drawn, _ = figure(360)
    photo, truth = composite(drawn, background(kind, 480, 640, 51), 160, 90)
    result = analyze(photo)
    alpha = segment_subject(result.image, result.meta()) > 0.5
    assert _iou(alpha, truth > 0.5) >= 0.95
    # Between the legs, just below the crotch (x = 0, y = 260 of the 420-unit figure drawn 360 high).
    cx, crotch_y = 160 + drawn.shape[1] // 2, 90 + round(280 * 360 / 420)
    assert not alpha[crotch_y, cx] and truth[crotch_y, cx] < 0.5


def test_astronaut_mask_is_the_person(astronaut):
    result = analyze(astronaut)
    alpha = segment_subject(result.image, result.meta()) > 0.5
    assert 0.25 < alpha.mean() < 0.6
    assert alpha[110, 230]  # face
    assert alpha[350, 200]  # suit
    assert not alpha[30, 480]  # backdrop, top right


def test_cartoon_person_keeps_face_and_loses_backdrop_through_png_metadata(astronaut):
    # Stages pass PNGs with JSON metadata; the pose detector often finds no one in the cartoon,
    # so the cut-out must come from the outline and landmarks the analysis of the photo found.
    result = analyze(astronaut)
    cartoon, meta = expand_full_body(*cartoonize(result.image, result.meta(), "classic"))
    meta = read_png_meta(encode_png(cartoon, meta))
    alpha = segment_subject(cartoon, meta) > 0.5
    for name in ("nose", "left_eye", "right_eye", "mouth_left", "left_shoulder", "right_shoulder"):
        x, y = meta["landmarks"][name]
        assert alpha[int(y), int(x)], name
    ex, ey = meta["landmarks"]["left_eye"]
    assert alpha[int(ey) - 40:int(ey) + 40, int(ex) - 30:int(ex) + 30].all()  # no hole in the face
    h, w = alpha.shape
    assert not alpha[:40, -40:].any() and not alpha[:40, :40].any()  # backdrop corners
    assert not alpha[-5:, :10].any()  # the strip under the drawn legs is background
    assert 0.2 < alpha.mean() < 0.6


def test_cutout_crops_with_padding_and_moves_landmarks():
    rgb = np.zeros((100, 100, 3), np.uint8)
    alpha = np.zeros((100, 100), np.float32)
    alpha[40:60, 30:50] = 1.0
    rgba = cutout(rgb, alpha, pad=5)
    assert rgba.shape == (30, 30, 4)
    assert rgba[5:25, 5:25, 3].min() == 255 and rgba[:5, :, 3].max() == 0
    meta = cutout_meta({"landmarks": {"nose": [40.0, 50.0]}, "box": [30, 40, 20, 20]}, alpha, pad=5)
    assert meta["landmarks"]["nose"] == [15.0, 15.0] and meta["size"] == [30, 30]
