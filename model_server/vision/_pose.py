"""One shared mediapipe pose model per process (landmarks and person mask), for analysis and
segmentation. Internal to the vision package.

mediapipe graphs are not thread-safe, so calls are serialised with a lock; the model loads
once (about 0.3 s) instead of once per request.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging is noise in our logs

# mediapipe's 33 pose landmarks, by index, under the names the rest of the pipeline uses.
LANDMARK_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)

_model = None
_lock = threading.Lock()


@dataclass
class PoseResult:
    landmarks: dict[str, tuple[float, float]]  # pixel coordinates of the analysed image
    visibility: dict[str, float]
    mask: np.ndarray  # float32 person probability, same HxW as the image


def detect_pose(rgb: np.ndarray) -> PoseResult | None:
    """Pose landmarks and person mask of the most prominent person, or None."""
    global _model
    h, w = rgb.shape[:2]
    with _lock:
        if _model is None:
            import mediapipe as mp

            _model = mp.solutions.pose.Pose(
                static_image_mode=True, model_complexity=1, enable_segmentation=True, min_detection_confidence=0.5
            )
        result = _model.process(np.ascontiguousarray(rgb))
    if result.pose_landmarks is None:
        return None
    landmarks, visibility = {}, {}
    for name, lm in zip(LANDMARK_NAMES, result.pose_landmarks.landmark):
        landmarks[name] = (float(lm.x * w), float(lm.y * h))
        visibility[name] = float(lm.visibility)
    mask = result.segmentation_mask
    mask = np.zeros((h, w), np.float32) if mask is None else np.asarray(mask, np.float32)
    return PoseResult(landmarks, visibility, mask)
