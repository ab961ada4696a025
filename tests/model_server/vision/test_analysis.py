"""Tests for model_server/vision/analysis.py."""

import cv2
import numpy as np
import pytest
from skimage import data

from model_server.vision.analysis import analyze, person_cut_off
from model_server.vision.errors import VisionError


def test_astronaut_is_a_cut_off_person(astronaut):
    result = analyze(astronaut)
    assert result.subject == "person" and result.rotation == 0
    x, y, w, h = result.box
    assert 100 < x + w / 2 < 350 and h > 300
    assert result.cut_off and "legs" in result.missing and "feet" in result.missing
    ex, ey = result.landmarks["left_eye"]
    assert 200 < ex < 300 and 80 < ey < 140
    assert result.meta()["box"] == list(result.box)


def test_astronaut_cropped_above_knees_is_cut_off(astronaut):
    assert analyze(np.ascontiguousarray(astronaut[:420])).cut_off


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_sideways_or_upside_down_person_is_turned_upright(astronaut, turns):
    result = analyze(np.ascontiguousarray(np.rot90(astronaut, turns)))
    assert result.subject == "person"
    assert result.rotation == (90 * turns) % 360
    assert np.abs(result.image.astype(int) - astronaut).mean() < 1


def test_upright_person_leaning_forward_is_not_turned():
    # skimage's cameraman leans into his camera: his head is far forward of his shoulders, which
    # alone reads as sideways; his torso stands upright, so the photo must stay as it is.
    camera = np.dstack([data.camera()] * 3)
    result = analyze(camera)
    assert result.subject == "person" and result.rotation == 0
    assert np.array_equal(result.image, camera)
    sx = (result.landmarks["left_shoulder"][0] + result.landmarks["right_shoulder"][0]) / 2
    assert 100 < sx < 260 and result.landmarks["nose"][1] < 200  # head in the top half, man on the left


def test_sideways_leaning_person_is_turned_upright():
    result = analyze(np.ascontiguousarray(np.rot90(np.dstack([data.camera()] * 3))))
    assert result.rotation == 90


def test_full_figure_landmarks_are_not_cut_off():
    landmarks = {"left_hip": (100, 200), "right_hip": (80, 200), "left_knee": (100, 280),
                 "right_knee": (80, 280), "left_ankle": (100, 350), "right_ankle": (80, 350)}
    assert person_cut_off(landmarks, (200, 400)) == []
    assert person_cut_off({**landmarks, "left_ankle": (100, 420)}, (200, 400)) == ["feet"]


def test_synthetic_full_figure_is_an_uncut_subject(synthetic_figure):
    img, _ = synthetic_figure
    result = analyze(img)
    assert not result.cut_off and result.missing == []


def test_coffee_and_chelsea_are_objects():
    assert analyze(data.coffee()).subject == "object"
    assert analyze(data.chelsea()).subject in ("animal", "object")


@pytest.mark.parametrize(
    "image",
    [
        np.full((300, 400, 3), 128, np.uint8),
        np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8),
        (np.linspace(90, 160, 400)[None, :, None] * np.ones((300, 1, 3))).astype(np.uint8),
    ],
    ids=["flat", "noise", "wall"],
)
def test_no_subject_is_refused_with_a_clear_message(image):
    with pytest.raises(VisionError) as err:
        analyze(image)
    assert err.value.code == "no_usable_subject"
    assert "couldn't find a person" in err.value.message


def test_tiny_person_is_too_small(astronaut):
    canvas = np.full((1400, 1400, 3), 235, np.uint8)
    canvas[1200:1400:, 1200:1400] = cv2.resize(astronaut, (200, 200))
    with pytest.raises(VisionError) as err:
        analyze(canvas)
    assert err.value.code in ("subject_too_small", "no_usable_subject")
