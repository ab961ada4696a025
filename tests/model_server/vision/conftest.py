"""Fixtures for the vision tests: skimage's permissively licensed photos and synthetic figures."""

import cv2
import numpy as np
import pytest
from skimage import data


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="session")
def synthetic_figure() -> tuple[np.ndarray, np.ndarray]:
    """A flat-shaded figure (head, body, legs) on a textured-free backdrop, and its true mask."""
    img = np.full((300, 240, 3), (210, 225, 235), np.uint8)
    mask = np.zeros((300, 240), np.uint8)
    for target, colour in ((img, (230, 120, 40)), (mask, 255)):
        cv2.circle(target, (120, 70), 34, colour if target is mask else (240, 200, 170), -1)
        cv2.ellipse(target, (120, 160), (48, 62), 0, 0, 360, colour, -1)
        cv2.rectangle(target, (95, 200), (112, 262), colour if target is mask else (60, 70, 140), -1)
        cv2.rectangle(target, (128, 200), (145, 262), colour if target is mask else (60, 70, 140), -1)
    return img, mask > 0
