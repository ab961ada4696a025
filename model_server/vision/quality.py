"""Quality checks on a subject's mask: a cut-out that is mostly background, a rectangle, or a
region whose outline follows none of the photo's contours is never published.

Thresholds were set on the project's quality set (``bench/quality_set.py``): people and a drawn
figure on plain, indoor, outdoor and busy backdrops, skimage's coffee and cat, and empty scenes
(skimage's rocket launch pad gave a chunk of sky whose outline follows the photo's edges less
than any real subject's does; figures at ``MIN_EDGE_ALIGNMENT``).
"""

from __future__ import annotations

import cv2
import numpy as np

from model_server.vision.errors import POOR_CUTOUT, VisionError

# Share of an object's outline (inside the frame) within 2 px of a photo edge, judged at the size
# its mask was found (analysis works on a 200 px copy: at full size its outline is a few pixels
# off, and a drawn figure on a plain backdrop scored 71-88 % there while a noisy backdrop's edges
# everywhere flattered the rest). At that size skimage's rocket launch pad (a chunk of sky)
# scores 79 %, drawn figures on 24 held-out plain, indoor and outdoor backdrops 94-100 %, coffee
# and cat 100 %.
MIN_EDGE_ALIGNMENT = 0.88
# On the cartoon (segment stage) the bar is lower: drawn legs and the cartoon's smoothed cells
# move some of the outline off the strongest edges (the astronaut's cut-out: 0.78; coffee 0.98).
CUTOUT_MIN_EDGE_ALIGNMENT = 0.6
MAX_BOX_FILL = 0.93  # a mask filling its bounding box this much is a rectangle, not a character
MIN_FRAME_SHARE = 0.02  # of the image the subject must cover
MAX_FRAME_SHARE = 0.92  # beyond this the "subject" is the whole photo

POOR_CUTOUT_MESSAGE = (
    "We couldn't cut a clear character out of this photo. Please upload a photo with one person, pet "
    "or toy clearly in view, in front of a simple background."
)


def edge_alignment(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Share of the mask's outline, away from the image border, lying within 2 px of an edge of the photo."""
    # Edges of any colour channel: a skin-toned face on a pale wall has almost no grey-level edge.
    found = np.zeros(rgb.shape[:2], np.uint8)
    for channel in cv2.split(np.ascontiguousarray(rgb)):
        found |= cv2.Canny(channel, 50, 150)
    edges = cv2.dilate(found, np.ones((5, 5), np.uint8)) > 0
    outline = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    outline[:3] = outline[-3:] = False
    outline[:, :3] = outline[:, -3:] = False
    return float(edges[outline].mean()) if outline.any() else 0.0


def box_fill(mask: np.ndarray) -> float:
    """Share of the mask's bounding box the mask covers (1.0 for a rectangle)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0.0
    return float(len(xs)) / float((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))


def check_cutout(rgb: np.ndarray, alpha: np.ndarray) -> dict[str, float]:
    """The quality figures of a subject's alpha over the whole image ``rgb`` (frame share, box
    fill, edge alignment); raises a business error when the cut-out must not be published."""
    mask = alpha > 0.5
    figures = {"frame_share": float(mask.mean()), "box_fill": box_fill(mask), "edge_alignment": edge_alignment(rgb, mask)}
    if (not MIN_FRAME_SHARE <= figures["frame_share"] <= MAX_FRAME_SHARE or figures["box_fill"] > MAX_BOX_FILL
            or figures["edge_alignment"] < CUTOUT_MIN_EDGE_ALIGNMENT):
        raise VisionError(POOR_CUTOUT, POOR_CUTOUT_MESSAGE)
    return figures
