"""The die-cut contour of one sticker: from the artwork's alpha channel to one closed path in mm.

A cutting plotter follows this path, so it must be one closed outline around the whole
character, at least ``offset_mm`` outside every opaque pixel (the white sticker border), with no
notches narrower than the blade can turn in. The recipe: threshold the alpha, drop specks, grow
the shape by the offset with a distance transform (a true round offset, unlike a square
kernel), close narrow inlets, merge parts that are still apart, smooth, then trace the external
outline, smooth away its pixel staircase and simplify it to a polygon.

Pure numpy/OpenCV, no drawing: ``sheet.py`` strokes the polygon; the tests measure it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Pixels at least this opaque belong to the character (faint antialiasing haze does not).
ALPHA_THRESHOLD = 32
# Opaque islands smaller than this are dust from segmentation, not part of the character.
MIN_ISLAND_MM2 = 0.5
# Extra growth beyond the offset so that smoothing and polygon simplification, which can both
# shave a little off convex corners, never bring the cut closer than the offset.
SAFETY_MM = 0.3
# Polygon simplification tolerance: far below what a cutter or an eye can see.
SIMPLIFY_MM = 0.05
# How far along the traced outline points are averaged to remove the pixel staircase.
SMOOTH_ALONG_MM = 0.3


@dataclass(frozen=True)
class Contour:
    """A closed polygon in mm, in the artwork's frame: origin at its top-left, y downward.

    The last point connects back to the first; points may lie outside the artwork (negative or
    beyond its size) because the contour surrounds it.
    """

    points_mm: np.ndarray  # shape (n, 2), float64

    def __post_init__(self) -> None:
        if self.points_mm.ndim != 2 or self.points_mm.shape[1] != 2 or len(self.points_mm) < 3:
            raise ValueError("a contour needs at least three (x, y) points")

    @property
    def bounds_mm(self) -> tuple[float, float, float, float]:
        """(min_x, min_y, max_x, max_y)."""
        lo = self.points_mm.min(axis=0)
        hi = self.points_mm.max(axis=0)
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def opaque_mask(alpha: np.ndarray, px_per_mm: float) -> np.ndarray:
    """The character's pixels as a uint8 0/255 mask, without specks of segmentation dust."""
    mask = (alpha >= ALPHA_THRESHOLD).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_area_px = MIN_ISLAND_MM2 * px_per_mm * px_per_mm
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area_px
    if count > 1 and not keep.any():
        # Everything is tiny (a very small drawing): keep it all rather than cut nothing.
        keep[1:] = True
    return np.where(keep[labels], 255, 0).astype(np.uint8)


def _disk(radius_px: int) -> np.ndarray:
    size = 2 * radius_px + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _outer_contours(mask: np.ndarray) -> list[np.ndarray]:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [c for c in contours if len(c) >= 3]


def offset_mask(
    alpha: np.ndarray, px_per_mm: float, offset_mm: float, smooth_mm: float = 1.5, extra_margin_mm: float = 0.0
) -> tuple[np.ndarray, int]:
    """The grown, smoothed, single-piece sticker shape, on a canvas padded so it never clips.

    Returns the mask and the padding in pixels (the artwork's top-left sits at (pad, pad));
    ``extra_margin_mm`` pads further for callers that grow the shape again (the bleed).
    """
    if alpha.ndim != 2:
        raise ValueError("alpha must be a 2-D array")
    if offset_mm <= 0 or px_per_mm <= 0:
        raise ValueError("offset and resolution must be positive")
    solid = opaque_mask(alpha, px_per_mm)
    if not solid.any():
        raise ValueError("the artwork has no opaque pixels to cut around")
    grow_px = (offset_mm + SAFETY_MM) * px_per_mm
    smooth_px = max(1, round(smooth_mm * px_per_mm))
    pad = int(np.ceil(grow_px + extra_margin_mm * px_per_mm)) + 2 * smooth_px + 2
    canvas = cv2.copyMakeBorder(solid, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)

    # Distance from every pixel to the nearest opaque pixel: thresholding it is an exact round offset.
    distance = cv2.distanceTransform(255 - canvas, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    grown = np.where(distance <= grow_px, 255, 0).astype(np.uint8)
    # Closing fills inlets narrower than ~2 * smooth_mm (between the legs, under an arm) that a
    # blade cannot follow; it only ever adds area, so the offset still holds.
    grown = cv2.morphologyEx(grown, cv2.MORPH_CLOSE, _disk(smooth_px))

    # Parts still apart (a separate prop, a gap wider than the offset) must share one cut:
    # close with ever larger disks, and as a last resort take the convex hull of everything.
    closing_px = smooth_px
    while len(_outer_contours(grown)) > 1 and closing_px < 12 * px_per_mm:
        closing_px *= 2
        grown = cv2.morphologyEx(grown, cv2.MORPH_CLOSE, _disk(closing_px))
    if len(_outer_contours(grown)) > 1:
        hull = cv2.convexHull(np.vstack(_outer_contours(grown)))
        grown = np.zeros_like(grown)
        cv2.fillPoly(grown, [hull], 255)
    # Filled outline only: holes inside the shape are not cut.
    filled = np.zeros_like(grown)
    cv2.drawContours(filled, _outer_contours(grown), -1, 255, thickness=cv2.FILLED)
    return filled, pad


def cut_contour(alpha: np.ndarray, px_per_mm: float, offset_mm: float = 2.5, smooth_mm: float = 1.5) -> Contour:
    """One closed outline ``offset_mm`` (or more) outside the opaque part of ``alpha``.

    ``alpha`` is the artwork's alpha channel (uint8) at ``px_per_mm`` pixels per millimetre of
    placed size; ~10 px/mm is plenty for a cut path and keeps this to a few milliseconds.
    """
    mask, pad = offset_mask(alpha, px_per_mm, offset_mm, smooth_mm)
    return _trace(mask, pad, px_per_mm)


def sticker_outlines(
    alpha: np.ndarray, px_per_mm: float, offset_mm: float = 2.5, bleed_mm: float = 1.5, smooth_mm: float = 1.5
) -> tuple[Contour, Contour]:
    """The cut contour and, ``bleed_mm`` outside it, the outline the sticker's border fills to.

    The bleed outline is the cut shape grown again, so the two stay parallel everywhere and a
    cut that lands a little off still falls inside printed border, never on bare backing.
    """
    mask, pad = offset_mask(alpha, px_per_mm, offset_mm, smooth_mm, extra_margin_mm=bleed_mm + SAFETY_MM)
    distance = cv2.distanceTransform(255 - mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    bleed_mask = np.where(distance <= (bleed_mm + SAFETY_MM) * px_per_mm, 255, 0).astype(np.uint8)
    return _trace(mask, pad, px_per_mm), _trace(bleed_mask, pad, px_per_mm)


def _smooth_closed(points: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-average a closed polyline along its length (wrapping around), one sigma in points."""
    radius = int(3 * sigma)
    if radius < 1 or len(points) <= 2 * radius:
        return points
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    wrapped = np.concatenate([points[-radius:], points, points[:radius]])
    return np.column_stack([np.convolve(wrapped[:, axis], weights, mode="valid") for axis in (0, 1)])


def _trace(mask: np.ndarray, pad: int, px_per_mm: float) -> Contour:
    (outline,) = _outer_contours(mask)
    # The traced outline steps from pixel to pixel; a blade would follow that staircase.
    # Averaging along the outline (sigma ~0.3 mm) makes it a smooth curve; the inward drift on
    # convex bends is a few hundredths of a mm, well inside SAFETY_MM.
    smooth = _smooth_closed(outline.reshape(-1, 2).astype(np.float64), sigma=SMOOTH_ALONG_MM * px_per_mm)
    epsilon_px = SIMPLIFY_MM * px_per_mm
    polygon = cv2.approxPolyDP(smooth.astype(np.float32).reshape(-1, 1, 2), epsilon_px, closed=True)
    polygon = polygon.reshape(-1, 2).astype(np.float64)
    if len(polygon) < 3:
        polygon = smooth
    # Pixel centres to mm in the artwork's frame (the pad moves back out).
    points_mm = (polygon + 0.5 - pad) / px_per_mm
    return Contour(points_mm)


def min_distance_to_opaque_mm(contour: Contour, alpha: np.ndarray, px_per_mm: float) -> float:
    """The closest any contour vertex comes to an opaque pixel, in mm (for checks and tests)."""
    solid = opaque_mask(alpha, px_per_mm)
    # For points outside the shape the nearest opaque pixel is on its boundary: far fewer points.
    boundary, _ = cv2.findContours(solid, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    opaque_mm = (np.vstack(boundary).reshape(-1, 2).astype(np.float64) + 0.5) / px_per_mm
    best = np.inf
    # Chunked so a large mask does not build one huge distance matrix.
    for start in range(0, len(contour.points_mm), 256):
        chunk = contour.points_mm[start : start + 256]
        d2 = ((chunk[:, None, :] - opaque_mm[None, :, :]) ** 2).sum(axis=2)
        best = min(best, float(np.sqrt(d2.min())))
    return best
