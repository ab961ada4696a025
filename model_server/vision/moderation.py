"""NSFW moderation of uploaded photos with nudenet's bundled detector (offline, CPU).

The stage only reports; the caller decides to reject with the ``nsfw`` business error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

# Classes that make a photo unacceptable for a family-friendly sticker product.
EXPOSED_CLASSES = frozenset({
    "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "BUTTOCKS_EXPOSED", "ANUS_EXPOSED",
})
# Below this detector score a box is too unsure to reject a paying user's photo.
NSFW_MIN_SCORE = 0.45

_detector = None
_detector_lock = threading.Lock()


@dataclass
class Moderation:
    nsfw: bool
    score: float  # highest score among exposed classes, 0.0 when none
    labels: list[dict] = field(default_factory=list)  # every detection: class, score, box [x, y, w, h]


def _get_detector():
    # The ONNX session costs ~0.5 s to build: once per process, shared between threads.
    global _detector
    with _detector_lock:
        if _detector is None:
            from nudenet import NudeDetector

            _detector = NudeDetector()
        return _detector


def moderate(rgb: np.ndarray) -> Moderation:
    """Detect exposed body parts in an RGB photo."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # nudenet reads arrays the OpenCV way
    detections = _get_detector().detect(bgr)
    labels = [
        {"class": d["class"], "score": round(float(d["score"]), 4), "box": [int(v) for v in d["box"]]}
        for d in detections
    ]
    exposed = [d["score"] for d in labels if d["class"] in EXPOSED_CLASSES]
    score = max(exposed, default=0.0)
    return Moderation(nsfw=score >= NSFW_MIN_SCORE, score=float(score), labels=labels)
