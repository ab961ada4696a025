"""Tests for model_server/vision/cartoon.py."""

import numpy as np

from model_server.vision.analysis import analyze
from model_server.vision.cartoon import cartoonize, expand_full_body


def test_cartoonize_crops_flattens_and_keeps_landmarks(astronaut):
    result = analyze(astronaut)
    cartoon, meta = cartoonize(result.image, result.meta(), "classic")
    h, w = cartoon.shape[:2]
    assert meta["size"] == [w, h] and max(h, w) == 768
    # Far fewer colours than the photo: a cartoon, not a filter of the photo.
    assert len(np.unique(cartoon.reshape(-1, 3), axis=0)) < len(np.unique(astronaut.reshape(-1, 3), axis=0)) / 3
    ex, ey = meta["landmarks"]["left_eye"]
    assert 0 < ex < w and 0 < ey < h / 2


def test_expand_full_body_adds_legs_and_clears_cut_off(astronaut):
    result = analyze(astronaut)
    cartoon, meta = cartoonize(result.image, result.meta(), "bold")
    expanded, new_meta = expand_full_body(cartoon, meta)
    assert expanded.shape[0] > cartoon.shape[0] and expanded.shape[1] == cartoon.shape[1]
    assert new_meta["cut_off"] is False and new_meta["missing"] == []
    assert new_meta["landmarks"]["left_ankle"][1] < expanded.shape[0]
    assert new_meta["drawn"]
    top = int(cartoon.shape[0] * 0.85)  # the photo part is kept (legs tuck under its last rows)
    assert np.array_equal(expanded[:top], cartoon[:top])
    # The legs continue the orange suit (a shade darker), not some other colour.
    knee = new_meta["landmarks"]["left_knee"]
    r, g, b = expanded[int(knee[1]), int(knee[0]) - 2:int(knee[0]) + 3].astype(int).mean(axis=0)
    assert r > g + 60 and r > b + 80


def test_outline_follows_the_cartoon_geometry(astronaut):
    result = analyze(astronaut)
    meta = result.meta()
    assert len(meta["outline"]) > 10
    cartoon, cmeta = cartoonize(result.image, meta, "classic")
    xs, ys = np.array(cmeta["outline"]).T
    h, w = cartoon.shape[:2]
    # The person spans most of the cartoon's height and the eyes lie inside the outline.
    assert ys.min() < 0.2 * h and ys.max() > 0.9 * h and xs.min() >= -1 and xs.max() <= w + 1


def test_expand_full_body_leaves_whole_subjects_alone():
    img = np.zeros((10, 10, 3), np.uint8)
    out, meta = expand_full_body(img, {"cut_off": False, "subject": "person"})
    assert out is img and meta["cut_off"] is False
