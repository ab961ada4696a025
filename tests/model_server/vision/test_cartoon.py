"""Tests for model_server/vision/cartoon.py."""

import cv2
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


def test_a_chest_high_photo_gets_a_lower_body_in_proportion_that_walks(astronaut):
    """Cut at the chest: the drawn lower body continues the suit (not the black neck ring at the
    cut), has thighs wider than shins and legs about a torso long, and the rig walks it."""
    from model_server.vision import motions
    from model_server.vision.animation import perform
    from model_server.vision.rig import build_rig
    from model_server.vision.segmentation import cutout, cutout_meta, segment_subject

    result = analyze(astronaut[:300])
    assert result.cut_off
    cartoon, meta = cartoonize(result.image, result.meta(), "classic")
    expanded, new = expand_full_body(cartoon, meta)
    lm = {k: np.array(v) for k, v in new["landmarks"].items()}
    shoulder_w = np.linalg.norm(lm["left_shoulder"] - lm["right_shoulder"])
    leg = lm["left_ankle"][1] - lm["left_hip"][1]
    assert 0.6 * shoulder_w <= leg <= 1.1 * shoulder_w
    assert lm["left_hip"][1] < lm["left_knee"][1] < lm["left_ankle"][1] < expanded.shape[0]
    drawn = np.zeros(expanded.shape[:2], np.uint8)
    cv2.fillPoly(drawn, [np.array(p, np.int32) for p in new["drawn"]], 1)

    def width_at(y):
        row = drawn[int(y)]
        x = int(lm["left_knee"][0])
        left, right = x, x
        while left > 0 and row[left - 1]:
            left -= 1
        while right < len(row) - 1 and row[right + 1]:
            right += 1
        return right - left + 1

    # Sampled on the outer (left) leg, between the hips and the knee and between knee and ankle.
    thigh, shin = width_at(lm["left_hip"][1] + 0.3 * leg), width_at(lm["left_ankle"][1] - 0.15 * leg)
    assert thigh > 1.2 * shin
    knee = lm["left_knee"]
    r, g, b = expanded[int(knee[1]), int(knee[0]) - 2:int(knee[0]) + 3].astype(int).mean(axis=0)
    assert r > g + 60 and r > b + 80, "the trousers continue the orange suit"
    alpha = segment_subject(expanded, new)
    rgba, rmeta = cutout(expanded, alpha), cutout_meta(new, alpha)
    rig = build_rig(rgba, rmeta)
    assert {"left_hip", "left_knee", "right_hip", "right_knee"} <= set(rig.bone_index)
    perf = perform(rig, motions.clip_for("walk", True), 1.0, 12)
    assert perf.flips == 0
    feet = rig.vertices[:, 1] > rig.ground - 0.05 * rig.height
    stride = np.ptp(perf.vertices[:, feet, 0].mean(axis=1))
    assert stride > 0.03 * rig.height
