"""Synthetic clips for the media tests: a soft-edged disc moving on a transparent background."""

from __future__ import annotations

import numpy as np
import pytest


def moving_disc_clip(frames: int, size: int, *, radius_fraction: float = 0.22, edge_px: float = 3.0) -> np.ndarray:
    """(frames, size, size, 4) RGBA uint8: a shaded, ink-outlined disc on a closed path, so
    frame ``frames`` would equal frame 0 (a seamless loop); alpha ramps over ``edge_px``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = radius_fraction * size
    clip = np.zeros((frames, size, size, 4), np.uint8)
    for index in range(frames):
        phase = 2 * np.pi * index / frames
        cx = size / 2 + 0.15 * size * np.cos(phase)
        cy = size / 2 + 0.10 * size * np.sin(2 * phase)
        dist = np.hypot(xx - cx, yy - cy)
        shade = np.clip(1.0 - 0.4 * dist / radius, 0, 1)
        clip[index, ..., 0] = (240 * shade).astype(np.uint8)
        clip[index, ..., 1] = (150 * shade).astype(np.uint8)
        clip[index, ..., 2] = 40
        ink = (dist > radius - 0.03 * size) & (dist < radius)
        clip[index, ink, :3] = 20
        clip[index, ..., 3] = np.round(np.clip((radius - dist) / edge_px + 0.5, 0, 1) * 255).astype(np.uint8)
    return clip


def alpha_iou(alpha_a: np.ndarray, alpha_b: np.ndarray, threshold: int = 128) -> float:
    """Intersection over union of the opaque (>= threshold) regions of two alpha stacks."""
    a, b = alpha_a >= threshold, alpha_b >= threshold
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="session")
def short_rgba_clip() -> np.ndarray:
    return moving_disc_clip(12, 96)
