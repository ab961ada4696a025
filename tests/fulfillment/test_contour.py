"""Die-cut contours: one closed outline, at least the offset outside the art, smooth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fulfillment.contour import cut_contour, min_distance_to_opaque_mm, sticker_outlines

PX_PER_MM = 10.0


def polygon_mask(contour, shape, pad) -> np.ndarray:
    mask = np.zeros((shape[0] + 2 * pad, shape[1] + 2 * pad), np.uint8)
    points = np.round(contour.points_mm * PX_PER_MM + pad).astype(np.int32)
    cv2.fillPoly(mask, [points], 255)
    return mask


def ellipse_alpha(height=400, width=300) -> np.ndarray:
    alpha = np.zeros((height, width), np.uint8)
    cv2.ellipse(alpha, (width // 2, height // 2), (width // 3, height // 3), 0, 0, 360, 255, -1)
    return alpha


def test_offset_is_at_least_the_requested_distance_and_not_much_more():
    alpha = ellipse_alpha()
    contour = cut_contour(alpha, PX_PER_MM, offset_mm=2.5)
    distance = min_distance_to_opaque_mm(contour, alpha, PX_PER_MM)
    assert 2.5 <= distance <= 3.0


def test_every_opaque_pixel_is_inside_the_cut():
    alpha = ellipse_alpha()
    contour = cut_contour(alpha, PX_PER_MM, offset_mm=2.0)
    pad = 60
    inside = polygon_mask(contour, alpha.shape, pad)[pad:-pad, pad:-pad]
    assert not np.any((alpha > 0) & (inside == 0))


def test_separate_parts_share_one_closed_cut():
    alpha = np.zeros((400, 400), np.uint8)
    cv2.circle(alpha, (100, 200), 60, 255, -1)
    cv2.circle(alpha, (330, 200), 40, 255, -1)  # 7 mm gap: the offsets alone do not touch
    contour = cut_contour(alpha, PX_PER_MM, offset_mm=2.0)
    pad = 60
    inside = polygon_mask(contour, alpha.shape, pad)[pad:-pad, pad:-pad]
    assert not np.any((alpha > 0) & (inside == 0))


def test_specks_of_dust_do_not_grow_their_own_islands():
    alpha = ellipse_alpha()
    alpha[5, 5] = 255  # one stray pixel far from the character
    with_speck = cut_contour(alpha, PX_PER_MM)
    clean = cut_contour(ellipse_alpha(), PX_PER_MM)
    assert with_speck.bounds_mm == pytest.approx(clean.bounds_mm)


def test_narrow_inlets_are_bridged():
    """Legs 6 mm apart: after the 2 mm offsets a 1.4 mm channel is left, too narrow for a blade."""
    alpha = np.zeros((300, 400), np.uint8)
    alpha[50:250, 100:145] = 255
    alpha[50:250, 205:250] = 255
    alpha[30:60, 100:250] = 255  # the hips join the legs at the top
    contour = cut_contour(alpha, PX_PER_MM, offset_mm=2.0)
    pad = 60
    inside = polygon_mask(contour, alpha.shape, pad)[pad:-pad, pad:-pad]
    assert inside[100:240, 170:180].all()


def test_contour_is_smooth_not_a_pixel_staircase():
    contour = cut_contour(ellipse_alpha(), PX_PER_MM)
    points = contour.points_mm
    edges = np.roll(points, -1, axis=0) - points
    headings = np.arctan2(edges[:, 1], edges[:, 0])
    turns = np.abs((np.diff(np.append(headings, headings[0])) + np.pi) % (2 * np.pi) - np.pi)
    # A staircase turns by 90 degrees at every step; a smooth ellipse never turns sharply.
    assert turns.max() < np.radians(30)
    assert len(points) < 400


def test_bleed_outline_surrounds_the_cut_by_the_bleed():
    alpha = ellipse_alpha()
    cut, bleed = sticker_outlines(alpha, PX_PER_MM, offset_mm=2.5, bleed_mm=1.5)
    cut_box, bleed_box = np.array(cut.bounds_mm), np.array(bleed.bounds_mm)
    assert np.allclose(cut_box[:2] - bleed_box[:2], 1.5, atol=0.4)
    assert np.allclose(bleed_box[2:] - cut_box[2:], 1.5, atol=0.4)


def test_fully_transparent_art_is_refused():
    with pytest.raises(ValueError, match="no opaque pixels"):
        cut_contour(np.zeros((50, 50), np.uint8), PX_PER_MM)
